"""Divergence and collapse are failures: a non-finite loss, non-finite generated images, a
non-finite metric value or a collapsed generator fail the run with the reason (and the evidence),
the sweep goes on, the command exits non-zero and no table shows a number for it."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import testplugins
from disentbench import MethodSpec, MetricSpec, hookimpl
from disentbench.contracts import DataInfo
from disentbench.evaluation import EvalContext, EvalOptions, NonFiniteOutput, generator_check, to_uint8
from disentbench.leaderboard import render
from disentbench.plugins import load_registries
from disentbench.runner import evaluate_metric, plan, run_sweep
from disentbench.training import Stage, Trainer, TrainingDiverged, TrainOptions

AE = {"recon_loss": "l1", "generator_channels": 16, "generator_last_channels": 8, "generator_last_kernel": 3,
      "encoder_channels": 8, "encoder_hidden": 32, "class_dim": 16, "content_dim": 8, "epochs": 2, "batch_size": 16}


class NaNTransfer(testplugins.TinyAE):
    """Trains normally; its transfers are NaN."""

    def transfer(self, class_images, content_images):
        return torch.full_like(class_images, float("nan"))


class ConstantDecoder(testplugins.TinyAE):
    """Trains normally; after training its decoder outputs one constant image for every input."""

    def decode(self, a, b):
        out = super().decode(a, b)
        return out if self.training else torch.full_like(out, 0.95)


class Plugin:
    @hookimpl
    def register_methods(self, register):
        register(MethodSpec(name="nan-transfer", target=NaNTransfer, supervision="unsupervised"))
        register(MethodSpec(name="constant-decoder", target=ConstantDecoder, supervision="unsupervised"))


@pytest.fixture
def regs():
    return load_registries(plugins=[testplugins, Plugin()])


def _cells(regs, tmp_path, tiny, methods, metrics="transfer_error", **over):
    overrides = {**tiny, "autoencoder": dict(AE), **over}
    return plan(regs, methods=methods, datasets="synth3d", metrics=metrics, overrides=overrides,
                out=tmp_path / "runs", progress=False)


# -- 1. divergence ------------------------------------------------------------------------------

def test_a_nan_loss_fails_the_run_naming_method_stage_step_and_term(regs, tmp_path, tiny):
    cells = _cells(regs, tmp_path, tiny, "autoencoder,tiny-ae-test",
                   autoencoder={**AE, "lr": 1e8})
    records = {r["method"]: r for r in run_sweep(cells, regs)}
    failed = records["autoencoder"]
    assert failed["status"] == "failed" and failed["error"]["type"] == "TrainingDiverged"
    message = failed["error"]["message"]
    assert "Autoencoder diverged" in message and "stage 'autoencoder'" in message
    assert "epoch 0" in message and "step " in message and "loss term 'reconstruction' = nan" in message
    assert failed["metrics"] == {}  # nothing was scored
    log = (tmp_path / "runs" / failed["run_id"] / "train_log.jsonl").read_text().splitlines()
    assert all(math.isfinite(v) for row in map(json.loads, log) for k, v in row.items() if k not in ("stage",))
    assert records["tiny-ae-test"]["status"] == "finished"  # the sweep went on
    evidence = records["tiny-ae-test"]["checks"]["generator"]  # recorded for finished runs too (check off here)
    assert evidence["passed"] and evidence["n_images"] == 24 and evidence["real_spread"] > 0.05
    assert 0 <= evidence["spread_ratio"] < 0.1 and evidence["mse_ratio"] > 1  # tiny = untrained: it would fail
    page = render(list(records.values()))
    row = next(line for line in page.splitlines() if line.startswith("| autoencoder"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    # images seen (none for a failed run), both metric columns, no cost, no grid
    assert cells[3:] == ["", "failed [1]", "failed [1]", "", "", ""]
    assert "TrainingDiverged: Autoencoder diverged" in page


def test_the_cli_exits_non_zero_and_the_leaderboard_shows_the_diverged_run_failed(tmp_path, tiny, monkeypatch):
    from disentbench.cli import main

    sets = [f"synth3d.{k}={v}" for k, v in tiny["synth3d"].items()]
    sets += [f"autoencoder.{k}={json.dumps(v)}" for k, v in {**AE, "lr": 1e8}.items()]
    sets += [f"eval.{k}={v}" for k, v in tiny["eval"].items()]
    args = ["run", "--methods", "autoencoder", "--datasets", "synth3d", "--metrics", "transfer_error", "--quiet",
            "--out", str(tmp_path / "runs"), "--leaderboard", str(tmp_path / "lb")]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 1
    page = (tmp_path / "lb" / "README.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| autoencoder"))
    assert "failed [1]" in row
    assert "1. autoencoder failed on 1 of 1 seed(s)" in page and "TrainingDiverged" in page


def test_the_trainer_names_the_first_non_finite_term(tiny_data):
    class Toy(testplugins.TinyAE):
        def stages(self, train):
            def step(batch, ctx):
                loss = self.decode(*self.encode(batch.images)).mean()
                ctx.update(loss)
                kl = torch.tensor(float("inf") if ctx.step == 2 else 1.0)
                return {"loss": loss.detach() + kl, "kl": kl}

            return [Stage("warmup", 3, 8, step, lambda: {"adam": torch.optim.Adam(self.parameters(), 1e-3)})]

    method = Toy(testplugins.TinyAEConfig(), DataInfo.from_split(tiny_data.train))
    with pytest.raises(TrainingDiverged) as info:
        Trainer(method, tiny_data.train, TrainOptions(), progress=False).run()
    exc = info.value
    assert (exc.method, exc.stage, exc.epoch, exc.step, exc.term, exc.value) == ("Toy", "warmup", 0, 3, "kl", math.inf)
    assert "also non-finite: loss = inf" in str(exc) and len(exc.log) == 2


def test_non_finite_images_are_refused_not_clamped():
    images = torch.rand(4, 3, 8, 8)
    assert to_uint8(images).shape == (4, 8, 8, 3)
    images[2, 0, 3, 3] = float("nan")
    with pytest.raises(NonFiniteOutput, match=r"transfer grid: 1 of 4 images have NaN"):
        to_uint8(images, "transfer grid")


def test_a_method_whose_transfer_returns_nan_fails_evaluation(regs, tmp_path, tiny, tiny_data):
    [cell] = _cells(regs, tmp_path, tiny, "nan-transfer")
    record = run_sweep([cell], regs)[0]
    assert record["status"] == "failed" and record["error"]["type"] == "NonFiniteOutput"
    assert "transfer grid" in record["error"]["message"]
    method = NaNTransfer(testplugins.TinyAEConfig(), DataInfo.from_split(tiny_data.train))
    ctx = EvalContext(method.eval(), tiny_data, device=torch.device("cpu"), seed=0, options=EvalOptions(n_pairs=10))
    with pytest.raises(NonFiniteOutput, match="transfer on split 'test'"):
        ctx.transferred()


class NaNMetric:
    def compute(self, ctx):
        return {"score": float("nan"), "n": 3.0}


def test_a_metric_returning_nan_is_an_error_with_a_reason(regs, tiny_data):
    spec = MetricSpec(name="nan-metric", target=NaNMetric, keys={"score": "min", "n": "info"})
    ctx = EvalContext(None, tiny_data, device=torch.device("cpu"), seed=0)
    entry = evaluate_metric(spec, {}, ctx, regs)
    assert entry["status"] == "error" and entry["values"] == {}
    assert "'nan-metric' returned 'score' = nan" in entry["reason"] and "MetricUnavailable" in entry["reason"]


# -- 2. collapse ----------------------------------------------------------------------------------

def test_a_constant_decoder_is_recorded_failed_with_the_evidence(regs, tmp_path, tiny):
    checks_on = {k: v for k, v in tiny["eval"].items() if not k.startswith("check_")}  # the defaults
    [cell] = _cells(regs, tmp_path, tiny, "constant-decoder", eval=checks_on)
    record = run_sweep([cell], regs)[0]
    assert record["status"] == "failed" and record["error"]["type"] == "GeneratorCollapsed"
    check = record["checks"]["generator"]
    assert check["passed"] is False and check["output_spread"] == 0.0 and check["spread_ratio"] == 0.0
    assert check["real_spread"] > 0.05 and check["n_images"] == 24  # every test image of the tiny split
    assert "(nearly) identical" in record["error"]["message"] and "eval.check_min_spread = 0.1" in record["error"]["message"]
    assert record["metrics"] == {}  # not scored
    assert (tmp_path / "runs" / record["run_id"] / record["artifacts"]["transfer_grid"]).is_file()  # the grid shows it
    assert record["timings"]["steps"] > 0 and "train_seconds" in record["timings"]  # the training's cost is kept


def test_the_check_passes_a_working_generator_and_measures_what_it_says(tiny_data):
    class Identity(testplugins.TinyAE):
        def reconstruct(self, images):
            return images

    class Mean(testplugins.TinyAE):
        def reconstruct(self, images):
            mean = torch.from_numpy(tiny_data.train.images.astype(np.float64).mean(0) / 255.0).float()
            return mean.permute(2, 0, 1)[None].expand_as(images)

    info = DataInfo.from_split(tiny_data.train)
    options = EvalOptions()
    ok = generator_check(Identity(testplugins.TinyAEConfig(), info), tiny_data, options, device=torch.device("cpu"))
    assert ok["passed"] and ok["spread_ratio"] == pytest.approx(1.0) and ok["reconstruction_mse"] < 1e-12
    mean = generator_check(Mean(testplugins.TinyAEConfig(), info), tiny_data, options, device=torch.device("cpu"))
    assert mean["mse_ratio"] == pytest.approx(1.0, abs=1e-6) and mean["spread_ratio"] == pytest.approx(0.0, abs=1e-6)
    assert not mean["passed"] and len(mean["failures"]) == 1  # exactly at the mean image: not above 1.0
    off = generator_check(Mean(testplugins.TinyAEConfig(), info), tiny_data,
                          EvalOptions(check_min_spread=0.0, check_max_mse=0.0), device=torch.device("cpu"))
    assert off["passed"] and off["mse_ratio"] == mean["mse_ratio"]  # 0 turns a check off; evidence kept


def test_a_row_with_one_failed_seed_shows_no_mean_of_the_survivors():
    from test_leaderboard import _record

    page = render([_record("lord", 0, 0.0123, 0.2), _record("lord", 1, 0.0, status="failed"),
                   _record("autoencoder", 0, 0.05, 0.9), _record("drnet", 0, 0.03, 0.5)])
    row = next(line for line in page.splitlines() if line.startswith("| lord"))
    assert [c.strip() for c in row.split("|")[1:-1]][2:5] == ["2", "failed [1]", "failed [1]"]
    assert "**0.0300**" in page and "**0.500**" in page  # the best of the rows that finished, not lord's 0.0123
    assert "0.012" not in page and "1. lord failed on 1 of 2 seed(s)" in page and "**" not in row
