from __future__ import annotations

import numpy as np
import pytest
import torch

from disentbench.contracts import DataInfo, MetricUnavailable
from disentbench.evaluation import EvalContext, EvalOptions
from disentbench.plugins import load_registries
from disentbench.runner import evaluate_metric
from disentbench_plugins.metrics.leakage import held_out_accuracy

import testplugins


@pytest.fixture
def oracle_ctx(tiny_data):
    testplugins.Oracle.bundle = tiny_data
    method = testplugins.Oracle(testplugins.OracleConfig(), DataInfo.from_split(tiny_data.train))
    return EvalContext(method, tiny_data, device=torch.device("cpu"), seed=0, options=EvalOptions(n_pairs=30, max_codes=100))


def _metric(name, ctx, **config):
    regs = load_registries()
    return evaluate_metric(regs.metrics.get(name), config, ctx, regs)


def test_transfer_pairs_follow_the_protocol(oracle_ctx, tiny_data):
    pairs = oracle_ctx.transfer_pairs()
    test = tiny_data.test
    assert len(pairs.class_idx) == 30
    assert np.all(test.classes[pairs.class_idx] != test.classes[pairs.content_idx])
    target = test.lookup(test.classes[pairs.class_idx], test.factors[pairs.content_idx])
    assert np.array_equal(pairs.targets, test.images[target])


def test_perfect_transfer_has_zero_error(oracle_ctx):
    entry = _metric("transfer_error", oracle_ctx)
    assert entry["status"] == "ok", entry
    assert entry["values"]["mse"] == 0.0 and entry["values"]["ssim"] == pytest.approx(1.0)
    assert _metric("reconstruction", oracle_ctx)["values"]["mse"] == 0.0


def test_a_wrong_transfer_has_positive_error(oracle_ctx):
    oracle_ctx.method.transfer = lambda a, b: b  # returns the content image: wrong class
    entry = _metric("transfer_error", oracle_ctx)
    assert entry["values"]["mse"] > 0.001 and entry["values"]["ssim"] < 0.99


def test_leakage_of_independent_codes_is_at_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 40)
    acc, chance = held_out_accuracy(rng.normal(size=(400, 8)), labels, seed=0, hidden=(32,), max_iter=100,
                                    test_fraction=0.25)
    assert chance == pytest.approx(0.1)
    assert abs(acc - chance) < 0.08
    acc, _ = held_out_accuracy(np.eye(10)[labels] + 0.01 * rng.normal(size=(400, 10)), labels, seed=0,
                               hidden=(32,), max_iter=300, test_fraction=0.25)
    assert acc == 1.0


def test_leakage_metric_on_oracle_codes(oracle_ctx):
    """Oracle content codes are the factors (no class information): class ← content at chance;
    its class codes are class ids (no content information): content ← class at chance."""
    oracle_ctx.options.max_codes = 48
    entry = _metric("leakage", oracle_ctx, hidden=[32], max_iter=200)
    v = entry["values"]
    assert entry["status"] == "ok", entry
    assert v["class_from_content"] <= v["chance_class"] + 0.1
    assert v["content_from_class"] <= v["chance_content"] + 0.1


def test_metric_needing_factors_is_unavailable_without_them(oracle_ctx, tiny_data):
    test = tiny_data.test
    from disentbench.contracts import DataBundle, Split

    no_factors = DataBundle("nf", {"train": tiny_data.train, "test": Split(test.images, test.classes)})
    oracle_ctx.data = no_factors
    entry = _metric("transfer_error", oracle_ctx)
    assert entry["status"] == "unavailable" and "no ground-truth content factors" in entry["reason"]


def test_undeclared_keys_are_an_error(oracle_ctx):
    from disentbench import MetricSpec

    class Bad:
        def compute(self, ctx):
            return {"surprise": 1.0}

    spec = MetricSpec(name="bad", target=Bad, keys={"x": "min"})
    entry = evaluate_metric(spec, {}, oracle_ctx, load_registries())
    assert entry["status"] == "error" and "surprise" in entry["reason"]


def test_unavailable_exception_is_recorded(oracle_ctx):
    from disentbench import MetricSpec

    class NeedsFile:
        def compute(self, ctx):
            raise MetricUnavailable("missing file /x/y.pth. Put the file at /x/y.pth")

    entry = evaluate_metric(MetricSpec(name="nf", target=NeedsFile, keys={"x": "min"}), {}, oracle_ctx,
                            load_registries())
    assert entry["status"] == "unavailable" and "/x/y.pth" in entry["reason"] and entry["values"] == {}
