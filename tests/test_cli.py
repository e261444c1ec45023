from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from disentbench.cli import main
from conftest import TINY


def _sets(**extra) -> list[str]:
    out = []
    for scope, table in {**TINY, **extra}.items():
        for key, value in table.items():
            out += ["--set", f"{scope}.{key}={json.dumps(value)}"]
    return out


def test_help_and_list(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "lord" in out and "class-supervised" in out and "synth3d" in out and "built-in" in out
    assert "transfer_error" in out and "mse ↓" in out
    assert main(["list", "metrics"]) == 0


def test_plugins_command(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "builtin-methods" in out and "disentbench" in out and "methods: lord" in out


def test_unknown_names_fail_before_any_work(tmp_path, capsys):
    assert main(["run", "--methods", "lrod", "--datasets", "synth3d", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'lrod'" in err and "Did you mean 'lord'?" in err
    assert main(["run", "--methods", "lord", "--datasets", "synth3d", "--set", "lord.epoch=1",
                 "--out", str(tmp_path / "r")]) == 2
    assert "valid options" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_run_writes_runs_and_leaderboard(tmp_path, capsys):
    args = ["run", "--methods", "lord", "--datasets", "synth3d", "--metrics", "transfer_error,leakage",
            "--seeds", "0", "--device", "cpu", "--out", str(tmp_path / "runs"),
            "--leaderboard", str(tmp_path / "lb"), "--quiet", *_sets()]
    assert main(args) == 0
    board = (tmp_path / "lb" / "README.md").read_text()
    assert "## synth3d" in board and "| lord" in board and "transfer_error.mse ↓" in board
    grid = next((tmp_path / "lb" / "grids").glob("synth3d-lord-*.png"))
    assert f"(grids/{grid.name})" in board
    assert main(args) == 0  # rerun: skipped, still exit 0
    assert "skipped (already finished)" in capsys.readouterr().out
    assert main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb2")]) == 0
    assert (tmp_path / "lb2" / "README.md").read_text() == board


def test_run_exits_nonzero_when_a_run_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("DISENTBENCH_PLUGINS", "testplugins")
    rc = main(["run", "--methods", "failing,lord", "--datasets", "synth3d", "--metrics", "reconstruction",
               "--device", "cpu", "--out", str(tmp_path / "runs"), "--leaderboard", str(tmp_path / "lb"),
               "--quiet", *_sets()])
    assert rc == 1
    board = (tmp_path / "lb" / "README.md").read_text()
    assert "| lord" in board and "Failed runs" in board and "always fails" in board


def test_weights_commands(capsys, tmp_path):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "vgg16" in out and "missing" in out
    assert main(["weights", "path", "vgg16"]) == 0
    assert capsys.readouterr().out.strip().endswith("vgg16-397923af.pth")


EXTERNAL_PLUGIN = '''
"""A third-party method in one file: a plain two-code autoencoder built from disentbench's blocks."""
from dataclasses import dataclass

import torch

from disentbench import MethodSpec, hookimpl
from disentbench.contracts import Codes
from disentbench.method import BaseMethod
from disentbench.nn import ConvDecoder, ConvEncoder
from disentbench.training import Stage


@dataclass
class Config:
    epochs: int = 1
    dim: int = 8


class TinyAE(BaseMethod):
    Config = Config

    def __init__(self, config, info):
        super().__init__(config, info)
        self.enc = ConvEncoder(2 * config.dim, info.height, info.channels, 8, 16, 16)
        self.dec = ConvDecoder(2 * config.dim, info.height, info.channels, 16, 8)

    def encode(self, x):
        z = self.enc(x)
        return Codes(z[:, : self.config.dim], z[:, self.config.dim :])

    def decode(self, a, b):
        return self.dec(torch.cat([a, b], 1))

    def stages(self, train):
        def step(batch, ctx):
            loss = (self.decode(*self.encode(batch.images)) - batch.images).abs().mean()
            ctx.update(loss)
            return {"loss": loss.detach()}
        return [Stage("ae", self.config.epochs, 16, step, lambda: {"adam": torch.optim.Adam(self.parameters(), 1e-3)})]


@hookimpl
def register_methods(register):
    register(MethodSpec(name="tiny-ae", target=TinyAE, description="external test plugin",
                        supervision="unsupervised"))
'''


def test_an_installed_third_party_plugin_is_listed_and_runs(tmp_path):
    """A real distribution (dist-info with an entry point in the 'disentbench' group) on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "tinyae_plugin.py").write_text(EXTERNAL_PLUGIN)
    info = site / "disentbench_tinyae-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: disentbench-tinyae\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[disentbench]\ntinyae = tinyae_plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    exe = [sys.executable, "-m", "disentbench.cli"]
    listed = subprocess.run([*exe, "list", "methods"], capture_output=True, text=True, env=env, check=True).stdout
    assert "tiny-ae" in listed and "disentbench-tinyae 0.3" in listed
    run = subprocess.run([*exe, "run", "--methods", "tiny-ae,lord", "--datasets", "synth3d",
                          "--metrics", "transfer_error", "--device", "cpu", "--out", str(tmp_path / "runs"),
                          "--leaderboard", str(tmp_path / "lb"), "--quiet", *_sets()],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    board = (tmp_path / "lb" / "README.md").read_text()
    assert "| tiny-ae" in board and "unsupervised" in board and "| lord" in board
    record = json.loads(next((tmp_path / "runs").glob("synth3d/tiny-ae/*/record.json")).read_text())
    assert record["versions"]["plugins"]["method:tiny-ae"] == {
        "plugin": "tinyae", "distribution": "disentbench-tinyae", "version": "0.3"}
