"""Executors own their command-line options: a plugin's executor adds a flag to ``disentbench run``
and receives its value in its config; the core names no executor (``--jobs`` and ``--ray-address``
come from the built-in executors' specs the same way)."""
from __future__ import annotations

import pytest

import executorplugin
from disentbench.cli import build_parser, main
from disentbench.plugins import load_registries

RUN = ["run", "--methods", "lord", "--datasets", "synth3d", "--metrics", "transfer_error", "--device", "cpu",
       "--quiet", "--no-leaderboard"]


@pytest.fixture
def echo(monkeypatch):
    monkeypatch.setenv("DISENTBENCH_PLUGINS", "executorplugin")
    executorplugin.SEEN.clear()
    yield executorplugin.SEEN
    executorplugin.SEEN.clear()


def _run_help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    return capsys.readouterr().out


def test_a_plugin_executor_adds_a_flag_and_receives_its_value(echo, tmp_path, capsys):
    assert "--echo-tag TAG" in _run_help(capsys)
    assert main([*RUN, "--out", str(tmp_path / "runs"), "--executor", "echo-test", "--echo-tag", "nightly",
                 "--echo-max-cells", "3", "--set", "echo-test.max_cells=7"]) == 0
    (config, cells), = echo
    assert config == executorplugin.EchoConfig(tag="nightly", max_cells=3)  # the flag wins over --set
    assert [(c.method, c.dataset, c.seed) for c in cells] == [("lord", "synth3d", 0)]


def test_a_plugin_flag_is_checked_and_refused_for_another_executor(echo, tmp_path, capsys):
    assert main([*RUN, "--out", str(tmp_path / "runs"), "--echo-tag", "x"]) == 2  # --executor local
    err = capsys.readouterr().err
    assert "--echo-tag applies to the echo-test executor" in err and "'local'" in err
    assert main([*RUN, "--out", str(tmp_path / "runs"), "--executor", "echo-test", "--echo-max-cells", "-1"]) == 2
    assert "--echo-max-cells -1 is not allowed: expected a number ≥ 0" in capsys.readouterr().err
    assert not echo and not (tmp_path / "runs").exists()


def test_the_help_names_each_flag_with_its_executor(echo, capsys):
    text = " ".join(_run_help(capsys).split())
    assert "local executor: run this many cells at once in worker processes" in text
    assert "ray executor: join this cluster (HOST:PORT or auto) instead of a local Ray" in text
    assert "echo-test executor: label every cell with this tag" in text


def test_without_the_plugin_the_flag_does_not_exist(capsys):
    parser = build_parser(load_registries())
    with pytest.raises(SystemExit):
        parser.parse_args([*RUN, "--echo-tag", "x"])
    assert "unrecognized arguments: --echo-tag" in capsys.readouterr().err
    assert parser.parse_args([*RUN, "--jobs", "2"]).jobs == 2


def test_a_flag_that_clashes_is_left_out_with_a_warning(capsys):
    from disentbench import CommandLineOption, ExecutorSpec, hookimpl

    class Clashing:
        @hookimpl
        def register_executors(self, register):
            register(ExecutorSpec(name="clash-test", target=executorplugin.EchoExecutor,
                                  options=(CommandLineOption("--out", "tag"),)))

    parser = build_parser(load_registries([Clashing()]))
    assert "executor 'clash-test': its option --out clashes" in capsys.readouterr().err
    assert parser.parse_args(["run", "--out", "elsewhere"]).out == "elsewhere"
