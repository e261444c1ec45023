"""LORD's optimiser: the paper's Adam at constant rates by default; the official lord-pytorch code's
(Adam with beta1 0.5, every learning rate on a cosine down to 1e-5 over each stage) with
``lr_schedule="cosine", adam_beta1=0.5``. The schedule is checked against torch's CosineAnnealingLR."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY
from disentbench import config as cfg
from disentbench.contracts import DataInfo
from disentbench.training import Batch, StepContext, cosine_lr
from disentbench_plugins.methods.lord import LORD, LORDConfig


def test_cosine_lr_is_torchs_cosine_annealing_step_for_step():
    steps, minimum = 12, 1e-5
    ours = torch.optim.Adam([{"params": [torch.zeros(1, requires_grad=True)], "lr": 3e-4},
                             {"params": [torch.zeros(1, requires_grad=True)], "lr": 3e-3}])
    ref = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": 3e-4},
                           {"params": [torch.zeros(1, requires_grad=True)], "lr": 3e-3}])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=steps, eta_min=minimum)
    for k in range(steps + 1):
        cosine_lr(ours, [3e-4, 3e-3], k / steps, minimum)
        assert [g["lr"] for g in ours.param_groups] == pytest.approx([g["lr"] for g in ref.param_groups], rel=1e-9)
        ref.step()
        scheduler.step()
    assert [g["lr"] for g in ours.param_groups] == pytest.approx([minimum, minimum])
    with pytest.raises(ValueError):  # one base rate per parameter group
        cosine_lr(ours, [3e-4], 0.5, minimum)


def test_defaults_are_the_papers_adam_and_leave_earlier_runs_their_identity():
    c = LORDConfig()
    assert (c.lr_schedule, c.lr_min, c.adam_beta1) == ("constant", 1e-5, 0.9)
    plain = cfg.to_dict(c)  # the options added later are not in the identity at their defaults ...
    assert not {"lr_schedule", "lr_min", "adam_beta1"} & set(plain)
    assert cfg.to_dict(cfg.build(LORDConfig, plain)) == plain  # ... and a config without them builds to them
    official = cfg.to_dict(cfg.build(LORDConfig, {"lr_schedule": "cosine", "adam_beta1": 0.5}))
    assert (official["lr_schedule"], official["adam_beta1"]) == ("cosine", 0.5) and "lr_min" not in official
    assert cfg.config_hash(plain) != cfg.config_hash(official)


def _batch(split, n=8):
    _, labels = np.unique(split.classes, return_inverse=True)
    images = torch.from_numpy(split.images[:n]).permute(0, 3, 1, 2).float() / 255
    return Batch(images, torch.arange(n), torch.from_numpy(labels[:n]))


def _rates(tiny_data, schedule: str, beta1: float) -> dict[str, list[list[float]]]:
    """The learning rates each stage's optimiser steps with, at each of 5 steps of a 5-step stage."""
    torch.manual_seed(0)
    method = LORD(cfg.build(LORDConfig, {**TINY["lord"], "lr_schedule": schedule, "adam_beta1": beta1, "lr_generator": 2e-3,
                                         "lr_latent": 2e-2, "lr_encoder": 1e-3}),
                  DataInfo.from_split(tiny_data.train))
    batch, seen = _batch(tiny_data.train), {}
    for stage in method.stages(tiny_data.train):
        optimizers = stage.optimizers()
        for opt in optimizers.values():
            assert opt.defaults["betas"] == (beta1, 0.999)
        ctx = StepContext(optimizers, torch.device("cpu"), "fp32", torch.Generator().manual_seed(0), total_steps=5)
        seen[stage.name] = []
        for k in range(5):
            ctx.step = k  # the trainer's counter, restored on resume: the schedule needs nothing else
            stage.step(batch, ctx)
            seen[stage.name].append([g["lr"] for g in optimizers[stage.name].param_groups])
    return seen


def test_each_stage_anneals_its_rates_from_its_own_start(tiny_data):
    seen = _rates(tiny_data, "cosine", 0.5)
    cos = [(1 + np.cos(np.pi * k / 5)) / 2 for k in range(5)]
    expect_latent = [[1e-5 + (2e-3 - 1e-5) * s, 1e-5 + (2e-2 - 1e-5) * s] for s in cos]
    expect_encoders = [[1e-5 + (1e-3 - 1e-5) * s] for s in cos]
    assert np.allclose(seen["latent"], expect_latent, rtol=1e-12)
    assert np.allclose(seen["encoders"], expect_encoders, rtol=1e-12)  # the second stage starts again at its maximum


def test_constant_keeps_the_papers_rates(tiny_data):
    seen = _rates(tiny_data, "constant", 0.9)
    assert seen["latent"] == [[2e-3, 2e-2]] * 5 and seen["encoders"] == [[1e-3]] * 5

