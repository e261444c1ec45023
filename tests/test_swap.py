"""The swap metric: frozen judges read content transfers (content of B, class of A, copies of A)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from disentbench.contracts import DataInfo
from disentbench.evaluation import EvalContext, EvalOptions
from disentbench.plugins import load_registries
from disentbench.runner import evaluate_metric
from disentbench_plugins.metrics.swap import SwapConfig, fit_judges, heldout_mask

import testplugins

JUDGES = {"channels": 8, "steps": 60, "min_judge_accuracy": 0.0}


@pytest.fixture
def ctx(tiny_data, tmp_path):
    testplugins.Oracle.bundle = tiny_data
    method = testplugins.Oracle(testplugins.OracleConfig(), DataInfo.from_split(tiny_data.train))
    return EvalContext(method, tiny_data, device=torch.device("cpu"), seed=0, options=EvalOptions(n_pairs=40),
                       cache_dir=tmp_path)


def _swap(ctx, **config):
    regs = load_registries()
    return evaluate_metric(regs.metrics.get("swap"), {**JUDGES, **config}, ctx, regs)


def _reads(ctx, images):
    judges = fit_judges(ctx, SwapConfig(**JUDGES))
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        content = np.stack([m(x).argmax(1).numpy() for m in judges.content], 1)
        klass = judges.class_ids[judges.classifier(x).argmax(1).numpy()]
    return content, klass


def test_a_perfect_transfer_scores_what_the_real_target_scores(ctx, tiny_data):
    entry = _swap(ctx)
    assert entry["status"] == "ok", entry
    v = entry["values"]
    # the oracle's transfers are the real targets, so the judges read them identically
    for key in ("content_accuracy", "class_accuracy", "copy_rate"):
        assert v[key] == v[f"real_{key}"]
    test = tiny_data.test
    assert v["chance_content"] == pytest.approx(1 / np.prod(test.factor_sizes))
    assert v["chance_class"] == pytest.approx(1 / len(np.unique(test.classes)))
    # independent computation from the judges' raw reads on the real targets
    pairs = ctx.transfer_pairs()
    content, klass = _reads(ctx, pairs.targets)
    fa, fb = test.factors[pairs.class_idx], test.factors[pairs.content_idx]
    differ = (fa != fb).any(1)
    assert v["content_accuracy"] == pytest.approx((content == fb).all(1).mean())
    assert v["class_accuracy"] == pytest.approx((klass == test.classes[pairs.class_idx]).mean())
    assert v["copy_rate"] == pytest.approx((content[differ] == fa[differ]).all(1).mean())
    assert v["n_copy_pairs"] == differ.sum()


def test_a_method_that_copies_the_class_image_is_read_as_copying(ctx, tiny_data):
    ctx.method.transfer = lambda a, b: a  # the output is the class image itself
    v = _swap(ctx)["values"]
    pairs = ctx.transfer_pairs()
    test = tiny_data.test
    content, klass = _reads(ctx, test.images[pairs.class_idx])
    fa, fb = test.factors[pairs.class_idx], test.factors[pairs.content_idx]
    differ = (fa != fb).any(1)
    assert v["copy_rate"] == pytest.approx((content[differ] == fa[differ]).all(1).mean())
    assert v["content_accuracy"] == pytest.approx((content == fb).all(1).mean())
    # the reconstruction reference reads the content image's reconstruction, the oracle's is exact
    real_content, _ = _reads(ctx, test.images[pairs.content_idx])
    assert v["recon_content_accuracy"] == pytest.approx((real_content == fb).all(1).mean())


def test_judges_below_the_stated_accuracy_make_the_metric_unavailable(ctx):
    entry = _swap(ctx, steps=1, min_judge_accuracy=1.01)
    assert entry["status"] == "unavailable"
    assert "min_judge_accuracy" in entry["reason"] and "judge_" in entry["reason"]


def test_judges_are_cached_and_seeded(ctx, tmp_path):
    first = _swap(ctx)["values"]
    cached = list(tmp_path.glob("*-swap-judges-*.pt"))
    assert len(cached) == 1
    ctx._memo.clear()
    assert _swap(ctx)["values"] == first  # loaded from the cache file
    cached[0].unlink()
    ctx._memo.clear()
    assert _swap(ctx)["values"] == first  # retrained with the same seed


def test_heldout_mask_is_stratified_and_keeps_a_training_image_of_every_label():
    labels = np.repeat(np.arange(5), [1, 2, 5, 10, 20])
    mask = heldout_mask(labels, 0.2, np.random.default_rng(0))
    held = np.bincount(labels[mask], minlength=5)
    assert held.tolist() == [0, 1, 1, 2, 4]
    assert all(np.any(~mask & (labels == k)) for k in range(5))


def test_a_dataset_without_factors_is_unavailable(ctx, tiny_data):
    from disentbench.contracts import DataBundle, Split

    test = tiny_data.test
    ctx.data = DataBundle("nf", {"train": tiny_data.train, "test": Split(test.images, test.classes)})
    entry = _swap(ctx)
    assert entry["status"] == "unavailable" and "factors" in entry["reason"]


def test_the_notes_name_the_judges_weights(ctx, tmp_path):
    """Cached and retrained judges of one seed are one instrument (one fingerprint); judges with other
    weights are named differently, so rows scored by different judges do not share a note."""
    from disentbench_plugins.metrics.swap import judge_fingerprint

    first = _swap(ctx)
    judges = fit_judges(ctx, SwapConfig(**JUDGES))
    assert first["notes"].endswith(f"judge weights {judges.fingerprint}") and len(judges.fingerprint) == 12
    ctx._memo.clear()
    assert _swap(ctx)["notes"] == first["notes"]  # loaded from the cache file: the same weights
    other = judge_fingerprint([*judges.content, judges.classifier])
    assert other == judges.fingerprint
    with torch.no_grad():
        judges.classifier.state_dict()[next(iter(judges.classifier.state_dict()))].add_(1e-6)
    assert judge_fingerprint([*judges.content, judges.classifier]) != judges.fingerprint
    ctx._memo.clear()
    assert _swap(ctx, steps=61)["notes"] != first["notes"]  # other judges (one more step), another name
