"""The metrics the paper suites add: landmark_regression (LORD Table 2) and lpips_random (the
offline stand-in evaluator for lpips_transfer)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from disentbench.contracts import DataBundle, DataInfo, Split
from disentbench.evaluation import EvalContext, EvalOptions
from disentbench.plugins import load_registries
from disentbench.runner import evaluate_metric
from disentbench_plugins.metrics.landmarks import regression_error

import testplugins

REGS = load_registries()


def _metric(name, ctx, **config):
    return evaluate_metric(REGS.metrics.get(name), config, ctx, REGS)


class CodeMethod:
    """Class code = a column of per-image numbers (leaky or not); content code = zeros."""

    def __init__(self, table: dict[int, np.ndarray]):
        self.table = table

    def encode(self, x):
        from disentbench.contracts import Codes

        key = (x.mean(dim=(1, 2, 3)) * 1e6).round().long().tolist()
        codes = torch.from_numpy(np.stack([self.table[k] for k in key])).float()
        return Codes(codes, torch.zeros(len(x), 2))


def _faces(n: int = 300, seed: int = 0):
    """Tiny 'faces' whose landmarks move with a pose variable; images distinct by their mean."""
    rng = np.random.default_rng(seed)
    pose = rng.uniform(-1, 1, n)
    marks = np.stack([np.stack([0.3 + 0.1 * pose, 0.4 + 0.0 * pose], 1), np.stack([0.7 + 0.1 * pose, 0.4 + 0.05 * pose], 1)], 1)
    marks = marks + 0.002 * rng.normal(size=marks.shape)
    images = np.zeros((n, 8, 8, 1), dtype=np.uint8)
    flat = images.reshape(n, -1)
    for k in range(n):  # a unique mean per image, so the stub method can look its codes up
        flat[k, : (k // 255) + 1] = 255
        flat[k, -1] = k % 255
    split = Split(images=images, classes=np.arange(n) % 30, extras={"landmarks": marks.astype(np.float32)})
    keys = [int(round(float(im.astype(np.float64).mean() / 255.0) * 1e6)) for im in images]
    return split, pose, keys, rng


def test_regression_error_is_in_pixels_and_separates_leaky_codes():
    rng = np.random.default_rng(0)
    pose = rng.uniform(-1, 1, 400)
    marks = np.stack([0.5 + 0.1 * pose, 0.5 + 0.1 * pose], 1)[:, None, :]  # one landmark
    leaky, chance = regression_error(pose[:, None], marks, seed=0, test_fraction=0.25, scale=(64, 64))
    assert leaky < 1e-6  # a class code holding the pose predicts the landmark exactly
    blind, chance2 = regression_error(rng.normal(size=(400, 4)), marks, seed=0, test_fraction=0.25, scale=(64, 64))
    assert chance == chance2 and blind > 0.8 * chance
    # the chance error is the mean distance to the mean position, in pixels of a 64-px image
    expected = np.sqrt(2) * 6.4 * np.abs(pose - pose.mean()).mean()
    assert chance == pytest.approx(expected, rel=0.15)
    _, chance32 = regression_error(pose[:, None], marks, seed=0, test_fraction=0.25, scale=(32, 32))
    assert chance32 == pytest.approx(chance / 2)


def test_landmark_regression_metric_end_to_end():
    split, pose, keys, rng = _faces()
    data = DataBundle("faces", {"train": split, "test": split})
    leaky = CodeMethod({k: np.array([p, rng.normal()]) for k, p in zip(keys, pose)})
    blind = CodeMethod({k: rng.normal(size=2) for k in keys})
    values = {}
    for name, method in (("leaky", leaky), ("blind", blind)):
        ctx = EvalContext(method, data, device=torch.device("cpu"), seed=0, options=EvalOptions(max_codes=1000))
        entry = _metric("landmark_regression", ctx)
        assert entry["status"] == "ok", entry
        values[name] = entry["values"]
        assert "2 annotated landmarks" in entry["notes"] and "8x8" in entry["notes"]
    assert values["leaky"]["error"] < 0.3 * values["blind"]["error"]
    assert values["blind"]["error"] == pytest.approx(values["blind"]["chance_error"], rel=0.2)
    assert values["leaky"]["n_images"] == 300


def test_landmark_regression_needs_landmarks(tiny_data):
    testplugins.Oracle.bundle = tiny_data
    method = testplugins.Oracle(testplugins.OracleConfig(), DataInfo.from_split(tiny_data.train))
    ctx = EvalContext(method, tiny_data, device=torch.device("cpu"), seed=0, options=EvalOptions(max_codes=50))
    entry = _metric("landmark_regression", ctx)
    assert entry["status"] == "unavailable" and "landmarks" in entry["reason"]


def test_lpips_random_is_zero_for_perfect_transfer_positive_otherwise_and_reproducible(tiny_data):
    import lpips  # noqa: F401  (CI installs it)
    testplugins.Oracle.bundle = tiny_data
    method = testplugins.Oracle(testplugins.OracleConfig(), DataInfo.from_split(tiny_data.train))

    def ctx():
        return EvalContext(method, tiny_data, device=torch.device("cpu"), seed=0, options=EvalOptions(n_pairs=12))

    state = torch.random.get_rng_state()
    perfect = _metric("lpips_random", ctx())
    assert torch.equal(state, torch.random.get_rng_state()), "the random backbone must not consume the global RNG"
    assert perfect["status"] == "ok", perfect
    assert perfect["values"]["lpips"] == pytest.approx(0.0, abs=1e-6) and perfect["values"]["n_pairs"] == 12
    assert "random AlexNet backbone" in perfect["notes"]
    original = method.transfer
    method.transfer = lambda a, b: b  # the content image: the wrong class
    try:
        wrong = [_metric("lpips_random", ctx())["values"]["lpips"] for _ in range(2)]
        other_backbone = _metric("lpips_random", ctx(), backbone_seed=1)["values"]["lpips"]
    finally:
        method.transfer = original
    assert wrong[0] > 0.001 and wrong[0] == wrong[1]
    assert other_backbone != wrong[0]
