"""One run path: `disentbench run` plans a plain sweep and a paper suite into the same
:class:`~disentbench.cli.Sweep` and runs both with one function, :func:`~disentbench.cli.execute_sweep`
(header, progress, summary, the user's page, --publish, torchrun ranks)."""
from __future__ import annotations

import pytest

from disentbench import cli
from disentbench.cli import main


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.setenv("DISENTBENCH_PLUGINS", "testplugins,suiteplugin,executorplugin")
    import executorplugin

    executorplugin.SEEN.clear()
    return executorplugin


def _common(tmp_path):
    return ["--device", "cpu", "--out", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data"),
            "--leaderboard", str(tmp_path / "lb"), "--quiet"]


PLAIN = ["run", "--methods", "oracle,failing", "--datasets", "synth3d", "--seeds", "0,1"]
PAPER = ["run", "--suite", "tiny-paper", "--scale", "quick"]


def test_a_plain_sweep_and_a_paper_suite_reach_the_same_execution(tmp_path, plugins, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "execute_sweep", lambda args, regs, sweep: seen.append(sweep) or 0)
    assert main([*PLAIN, *_common(tmp_path)]) == 0
    assert main([*PAPER, *_common(tmp_path)]) == 0
    assert main(["run", *_common(tmp_path)]) == 0  # no arguments: the default plain suite
    plain, paper, default = seen
    assert all(isinstance(s, cli.Sweep) for s in seen)

    assert [(c.method, c.seed) for c in plain.cells] == [("oracle", 0), ("oracle", 1), ("failing", 0), ("failing", 1)]
    assert plain.header.startswith("disentbench: sweep: 4 run(s) (2 methods × 1 datasets × 2 seeds) on cpu")
    assert plain.suite is None and plain.page_name == "leaderboard" and plain.rows == {}
    assert plain.page == {"page": "README.md", "collections": ["runs"]}
    assert {plain.label(c) for c in plain.cells} == {""}

    assert paper.header.startswith("disentbench: suite 'tiny-paper' (Table 1) at scale 'quick':")
    assert paper.suite.name == "tiny-paper" and paper.page_name == "paper table"
    assert paper.page["suite"] == "tiny-paper" and paper.page["scale"] == "quick"
    assert paper.page["collections"] == ["tiny-paper"]
    assert paper.cells and all(paper.label(c).startswith(" (row ") for c in paper.cells)

    assert default.suite.name == cli.DEFAULT_SUITE and default.page_name == "leaderboard"
    assert default.header.startswith("disentbench: suite 'quick':")


@pytest.mark.parametrize("argv, written", [(PLAIN, "your leaderboard"), (PAPER, "your paper table")])
def test_one_execution_runs_either(tmp_path, plugins, capsys, argv, written):
    """The same function runs both: the executor gets the planned cells, then the summary and the page."""
    assert main([*argv, *_common(tmp_path), "--executor", "echo-test"]) == 0
    [(config, cells)] = plugins.SEEN
    assert cells
    out = capsys.readouterr().out
    assert "disentbench: 0 of 0 run(s) finished or skipped, 0 failed" in out
    assert f"disentbench: {written}: {tmp_path / 'lb'}" in out


@pytest.mark.parametrize("argv", [PLAIN, PAPER])
def test_under_torchrun_every_rank_runs_the_cells_and_rank_0_alone_reports(tmp_path, plugins, monkeypatch, capsys,
                                                                          argv):
    """Under torchrun (faked here) a rank other than 0 runs every cell in order and writes no page;
    this applies to paper suites as to plain sweeps."""
    import disentbench.runner
    import disentbench.training

    ran = []
    monkeypatch.setattr(disentbench.training, "init_distributed_from_env", lambda: (1, 2))
    monkeypatch.setattr(disentbench.runner, "execute", lambda cell, regs: ran.append(cell.run_id) or {})
    seen = []
    real = cli.plan_run
    monkeypatch.setattr(cli, "plan_run", lambda args, regs: seen.append(real(args, regs)) or seen[-1])
    assert main([*argv, *_common(tmp_path)]) == 0
    assert ran == [c.run_id for c in seen[0].cells] and ran
    out = capsys.readouterr().out
    assert "run(s) finished or skipped" not in out and not (tmp_path / "lb").exists()

    monkeypatch.setattr(disentbench.training, "init_distributed_from_env", lambda: (0, 2))
    assert main([*argv, *_common(tmp_path), "--jobs", "2"]) == 2
    assert "under torchrun every rank runs the cells in order" in capsys.readouterr().err


def test_a_plain_sweep_is_planned_as_a_table_with_implicit_rows_and_columns(plugins):
    """A plain suite goes through the paper tables' planner as a row per method and a column per
    dataset and metric, and yields exactly the runs, in the order, that planning methods × datasets
    × seeds directly gives (datasets outermost, then methods, then seeds): same run ids, same configs."""
    from disentbench.plugins import load_registries
    from disentbench.runner import plan, plan_suite
    from disentbench.suites import Suite

    regs = load_registries()
    suite = Suite(name="s", description="", methods=["oracle", "failing"], datasets=["synth3d", "cars3d"],
                  metrics=["reconstruction", "leakage"], seeds=[0, 1], settings={"train": {"max_steps": 3}})
    rows, columns = suite.table(regs)
    assert [r.method for r in rows] == ["oracle", "failing"]
    assert [(c.dataset, c.metric) for c in columns] == [("synth3d", "reconstruction"), ("synth3d", "leakage"),
                                                      ("cars3d", "reconstruction"), ("cars3d", "leakage")]
    planned = plan_suite(suite, regs, overrides={"oracle": {}}, progress=False).to_run()
    direct = plan(regs, methods=["oracle", "failing"], datasets=["synth3d", "cars3d"],
                  metrics=["reconstruction", "leakage"], seeds=[0, 1], overrides={"train": {"max_steps": 3}},
                  progress=False)
    assert [c.run_id for c in planned] == [c.run_id for c in direct] and len(direct) == 8
    assert [(c.dataset, c.method, c.seed) for c in planned][:4] == [
        ("synth3d", "oracle", 0), ("synth3d", "oracle", 1), ("synth3d", "failing", 0), ("synth3d", "failing", 1)]
    assert [c.run.to_json() for c in planned] == [c.run.to_json() for c in direct]
    assert all(list(c.run.metrics) == ["reconstruction", "leakage"] for c in planned)
