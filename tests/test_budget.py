"""Equal training budgets: ``train.max_images`` splits one budget in images seen across a method's
stages in proportion to their nominal sizes, replacing their epochs (fewer or more); the run record
carries the images seen; the quick scales give every method the same budget."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from disentbench.training import RandomSampler, Stage, TrainOptions, Trainer


class TwoStages(nn.Module):
    """Two stages that only count what they see: A (``epochs_a`` epochs of batches of 8) and B."""

    def __init__(self, epochs_a: int = 2, epochs_b: int = 1, batch_b: int = 4) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.epochs_a, self.epochs_b, self.batch_b = epochs_a, epochs_b, batch_b

    def stages(self, train):
        return [Stage("a", self.epochs_a, 8, self._step, self._opt, RandomSampler()),
                Stage("b", self.epochs_b, self.batch_b, self._step, self._opt, RandomSampler())]

    def _opt(self):
        return {"w": torch.optim.SGD([self.w], lr=0.0)}

    def _step(self, batch, ctx):
        return {"loss": torch.zeros(())}


def _per_stage(result):
    out: dict[str, int] = {}
    for row in result.log:
        out[row["stage"]] = out.get(row["stage"], 0) + 1
    return out


def test_nominal_training_is_unchanged_without_a_budget(tiny_data):
    n = len(tiny_data.train.classes)
    result = Trainer(TwoStages(), tiny_data.train, TrainOptions(), progress=False).run()
    assert _per_stage(result) == {"a": 2 * (n // 8), "b": n // 4}
    assert "budget" not in result.info


@pytest.mark.parametrize("budget", [48, 400])  # fewer and more images than the stages' epochs hold
def test_a_budget_in_images_is_split_across_stages_by_their_nominal_sizes(tiny_data, budget):
    n = len(tiny_data.train.classes)
    size_a, size_b = 2 * (n // 8) * 8, (n // 4) * 4  # nominal images of each stage
    result = Trainer(TwoStages(), tiny_data.train, TrainOptions(max_images=budget), progress=False).run()
    steps = _per_stage(result)
    assert steps["a"] == round(budget * size_a / (size_a + size_b) / 8)
    assert result.images == steps["a"] * 8 + steps["b"] * 4
    assert abs(result.images - budget) <= 4  # within half a batch of the last stage
    assert result.info["budget"] == {"max_images": budget, "steps": steps}


def test_a_stage_of_zero_epochs_stays_off_under_a_budget(tiny_data):
    result = Trainer(TwoStages(epochs_b=0), tiny_data.train, TrainOptions(max_images=64), progress=False).run()
    assert _per_stage(result) == {"a": 8} and result.images == 64


def test_max_steps_still_caps_each_stage_under_a_budget(tiny_data):
    result = Trainer(TwoStages(), tiny_data.train, TrainOptions(max_images=400, max_steps=3), progress=False).run()
    assert _per_stage(result) == {"a": 3, "b": 3} and result.images == 3 * 8 + 3 * 4


# -- the leaderboard shows images seen, and footnotes a row trained on another budget -----------

def _lb_record(method, images, mse):
    return {"run_id": f"synth3d/{method}/seed0-abc", "status": "finished", "method": method, "dataset": "synth3d",
            "seed": 0, "supervision": "class-supervised", "config_hash": "abcdef123456",
            "metrics": {"transfer_error": {"status": "ok", "values": {"mse": mse}, "directions": {"mse": "min"},
                                           "reason": None, "notes": ""}},
            "timings": {"train_seconds": 1.0, "images_per_second": 1.0, "images_seen": images}}


def test_leaderboard_shows_images_seen_and_footnotes_an_unequal_budget():
    from disentbench.leaderboard import render

    out = render([_lb_record("a", 6144, 0.1), _lb_record("b", 6100, 0.2), _lb_record("lord", 19200, 0.05)])
    header = next(line for line in out.splitlines() if line.startswith("| method"))
    assert "images seen" in header
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "| 6144 " in rows["a"] and "| 6100 " in rows["b"] and "[" not in rows["b"].split("|")[4]  # within rounding
    assert "19200 [1]" in rows["lord"]
    assert "1. unequal training budget: 19200 images seen, against the table's median of 6144" in out


def test_leaderboard_without_images_seen_has_no_such_column():
    from disentbench.leaderboard import render

    record = _lb_record("a", 0, 0.1)
    del record["timings"]["images_seen"]
    assert "images seen" not in render([record])


# -- the run record and the quick scales ---------------------------------------------------------

def test_the_run_record_carries_images_seen_and_the_budget_split(tmp_path, tiny):
    from disentbench.plugins import load_registries
    from disentbench.runner import execute, plan

    regs = load_registries()
    overrides = {**{k: tiny[k] for k in ("synth3d", "lord", "eval")}, "train": {"max_images": 64}}
    [cell] = plan(regs, methods=["lord"], datasets=["synth3d"], metrics=["reconstruction"], overrides=overrides,
                  out=tmp_path, progress=False)
    record = execute(cell, regs)
    assert record["status"] == "finished", record.get("error")
    # LORD's stages: 2 epochs of latent optimisation, then 1 of encoders, batches of 16: 48 + 16 images
    assert record["timings"]["images_seen"] == 64
    assert record["method_info"]["budget"] == {"max_images": 64, "steps": {"latent": 3, "encoders": 1}}


def test_every_quick_scale_gives_every_method_the_quick_suites_budget():
    from disentbench.plugins import load_registries
    from disentbench.suites import scale_settings

    regs = load_registries()
    quick = regs.suites.get("quick").load()
    budget = quick.settings["train"]["max_images"]
    assert budget > 0 and "max_steps" not in quick.settings["train"]
    for spec in regs.suites:
        suite = spec.load()
        if suite.is_paper_table and "quick" in suite.scales:
            settings, _ = scale_settings(suite, "quick", regs)
            assert settings["train"] == {"max_images": budget}, suite.name  # no per-stage step cap on top
            for row in suite.rows:  # no row trains with its own epochs under the budget
                assert not {"max_images", "max_steps"} & set(row.settings), (suite.name, row.key)
