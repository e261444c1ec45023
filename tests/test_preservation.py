"""Identity and pose preservation (Xiao et al.): evaluators trained by the harness on the training
split, cached per dataset (the same for every method and run seed), applied to generated images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from disentbench.contracts import DataInfo
from disentbench.evaluation import EvalContext, EvalOptions
from disentbench.plugins import load_registries
from disentbench.runner import evaluate_metric

import testplugins

FAST = {"channels": 8, "epochs": 2, "batch_size": 16}


def _ctx(data, cache_dir, seed=0, transfer=None):
    testplugins.Oracle.bundle = data
    method = testplugins.Oracle(testplugins.OracleConfig(), DataInfo.from_split(data.train))
    if transfer is not None:
        method.transfer = transfer
    return EvalContext(method, data, device=torch.device("cpu"), seed=seed, options=EvalOptions(n_pairs=24),
                       cache_dir=cache_dir)


def _metric(name, ctx, **config):
    regs = load_registries()
    return evaluate_metric(regs.metrics.get(name), {**FAST, **config}, ctx, regs)


def test_identity_score_is_exact_for_copies_and_the_evaluator_is_cached(tiny_data, tmp_path, monkeypatch):
    """Copying the identity image gives sigmoid(f·f) = sigmoid(1) whatever the evaluator; copying the
    pose image gives exactly the real different-identity affinity. The second run (another run seed)
    reuses the cached evaluator instead of training."""
    ctx = _ctx(tiny_data, tmp_path, transfer=lambda a, b: a)
    entry = _metric("id_preservation", ctx)
    assert entry["status"] == "ok", entry
    v = entry["values"]
    assert v["score"] == pytest.approx(1 / (1 + np.exp(-1)), abs=1e-6)
    assert set(v) == {"score", "real_same", "real_different", "n_pairs"} and v["n_pairs"] == 24
    assert "trained here from scratch" in entry["notes"]
    cached = list(tmp_path.glob("synth3d-identity-*.pt"))
    assert len(cached) == 1

    from disentbench import training

    def no_training(self):
        raise AssertionError("the cached evaluator should have been used")

    monkeypatch.setattr(training.Trainer, "run", no_training)
    ctx2 = _ctx(tiny_data, tmp_path, seed=1, transfer=lambda a, b: b)
    entry2 = _metric("id_preservation", ctx2)
    assert entry2["status"] == "ok", entry2
    assert entry2["values"]["score"] == pytest.approx(entry2["values"]["real_different"], abs=1e-6)
    assert list(tmp_path.glob("synth3d-identity-*.pt")) == cached


def test_identity_evaluator_learns_to_separate_identities(tiny_data, tmp_path):
    ctx = _ctx(tiny_data, tmp_path)
    v = _metric("id_preservation", ctx, epochs=15, lr=3e-3)["values"]
    assert v["real_same"] > v["real_different"] + 0.02  # held-out identities: same > different


def test_pose_score_of_copying_the_pose_image_equals_the_classifier_on_real_images(tiny_data, tmp_path):
    ctx = _ctx(tiny_data, tmp_path, transfer=lambda a, b: b)
    entry = _metric("pose_preservation", ctx, split="train")
    assert entry["status"] == "ok", entry
    from disentbench_plugins.metrics.preservation import PoseClassifier, PosePreservationConfig, apply, trained_evaluator

    c = PosePreservationConfig(split="train", **FAST)
    fresh = _ctx(tiny_data, tmp_path)
    model, summary = trained_evaluator(fresh, "pose", lambda: PoseClassifier(3, 8, c), c.training_options(), c.seed)
    assert summary["cached"] is True  # the metric's own evaluator, from the cache
    pairs = ctx.transfer_pairs("train", need_targets=False)
    train = tiny_data.train
    predicted = apply(model, train.images[pairs.content_idx], ctx.device).argmax(1).numpy()
    expected = float(np.mean(predicted == train.content_labels()[pairs.content_idx]))
    assert entry["values"]["accuracy"] == pytest.approx(expected)


def test_pose_preservation_needs_factors_and_says_when_it_is_at_chance(tiny_data, tmp_path):
    from disentbench.contracts import DataBundle, Split

    test = tiny_data.test
    bundle = DataBundle("nf", {"train": tiny_data.train, "test": Split(test.images, test.classes)})
    entry = _metric("pose_preservation", _ctx(bundle, tmp_path))
    assert entry["status"] == "unavailable" and "factors" in entry["reason"]
    entry = _metric("pose_preservation", _ctx(tiny_data, tmp_path), epochs=1)  # held-out objects: chance
    assert entry["status"] == "ok"
    chance = 1 / 8  # 4 azimuths × 2 elevations, every pose equally often
    assert entry["values"]["real_accuracy"] < 2 * chance and "near chance" in entry["notes"], entry
    trained = _metric("pose_preservation", _ctx(tiny_data, tmp_path / "train"), split="train", epochs=40, batch_size=8)
    assert trained["values"]["real_accuracy"] >= 2 * chance and "near chance" not in trained["notes"], trained
