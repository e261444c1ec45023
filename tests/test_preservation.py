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

FAST = {"channels": 8, "steps": 4, "batch_size": 16}
NO_GATE = {"id_preservation": {"min_auc": 0.0}, "pose_preservation": {"min_skill": -100.0}}  # formula tests


def _ctx(data, cache_dir, seed=0, transfer=None):
    testplugins.Oracle.bundle = data
    method = testplugins.Oracle(testplugins.OracleConfig(), DataInfo.from_split(data.train))
    if transfer is not None:
        method.transfer = transfer
    return EvalContext(method, data, device=torch.device("cpu"), seed=seed, options=EvalOptions(n_pairs=24),
                       cache_dir=cache_dir)


def _metric(name, ctx, gate=False, **config):
    regs = load_registries()
    return evaluate_metric(regs.metrics.get(name), {**FAST, **({} if gate else NO_GATE[name]), **config}, ctx, regs)


def test_identity_score_is_exact_for_copies_and_the_evaluator_is_cached(tiny_data, tmp_path, monkeypatch):
    """Copying the identity image gives sigmoid(f·f) = sigmoid(1) whatever the evaluator; copying the
    pose image gives exactly the real different-identity affinity. The second run (another run seed)
    reuses the cached evaluator instead of training."""
    ctx = _ctx(tiny_data, tmp_path, transfer=lambda a, b: a)
    entry = _metric("id_preservation", ctx)
    assert entry["status"] == "ok", entry
    v = entry["values"]
    assert v["score"] == pytest.approx(1 / (1 + np.exp(-1)), abs=1e-6)
    assert set(v) == {"score", "real_same", "real_different", "n_pairs", "verification_auc"} and v["n_pairs"] == 24
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
    entry = _metric("id_preservation", ctx, gate=True, steps=60, lr=3e-3, min_auc=0.7)
    assert entry["status"] == "ok", entry
    v = entry["values"]
    assert v["real_same"] > v["real_different"] + 0.02  # held-out identities: same > different
    assert v["verification_auc"] >= 0.7 and f"verification AUC {v['verification_auc']:.3f}" in entry["notes"]


def test_pose_score_of_copying_the_pose_image_equals_the_classifier_on_real_images(tiny_data, tmp_path):
    ctx = _ctx(tiny_data, tmp_path, transfer=lambda a, b: b)
    entry = _metric("pose_preservation", ctx, split="train")
    assert entry["status"] == "ok", entry
    from disentbench_plugins.metrics.preservation import PoseClassifier, PosePreservationConfig, apply, trained_evaluator

    c = PosePreservationConfig(split="train", **FAST, **NO_GATE["pose_preservation"])
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
    # held-out objects of synth3d (no canonical front): the classifier is at chance there, so no score
    entry = _metric("pose_preservation", _ctx(tiny_data, tmp_path), gate=True, steps=2)
    assert entry["status"] == "unavailable" and "fails its quality check" in entry["reason"]
    assert "pose_preservation.split=train" in entry["reason"]


# -- training budget in steps and the quality gate ------------------------------------------------

def test_evaluators_train_for_the_stated_steps_and_the_budget_is_in_the_cache_key(tiny_data, tmp_path):
    """20 "epochs" of a small split were 20 steps or fewer; the budget is now steps, whatever the
    split's size, and a new budget (or holdout) trains a new evaluator instead of reusing the cache."""
    ctx = _ctx(tiny_data, tmp_path, transfer=lambda a, b: a)
    entry = _metric("id_preservation", ctx, steps=7)
    assert entry["status"] == "ok", entry
    train = tiny_data.train
    n_fit = len(train) - round(0.2 * len(train))
    assert f"identity evaluator trained for 7 steps of 16 images on {n_fit} training images" in entry["notes"]
    assert len(list(tmp_path.glob("synth3d-identity-*.pt"))) == 1
    assert _metric("id_preservation", ctx, steps=9)["status"] == "ok"
    assert _metric("id_preservation", ctx, steps=9, holdout=0.3)["status"] == "ok"
    assert len(list(tmp_path.glob("synth3d-identity-*.pt"))) == 3
    saved = [torch.load(p, weights_only=True)["summary"]["steps"] for p in tmp_path.glob("synth3d-identity-*.pt")]
    assert sorted(saved) == [7, 9, 9]


def test_identity_score_is_given_only_above_the_quality_threshold(tiny_data, tmp_path):
    """The verification AUC on real held-out images is recorded beside the score; above it, the
    threshold makes the metric unavailable with the AUC as the reason (same cached evaluator: the
    threshold is not part of its training)."""
    ctx = _ctx(tiny_data, tmp_path)
    entry = _metric("id_preservation", ctx, gate=True, steps=6, min_auc=0.0)
    assert entry["status"] == "ok", entry
    auc = entry["values"]["verification_auc"]
    assert 0.0 <= auc <= 1.0
    assert "quality check: verification AUC" in entry["notes"] and "split 'test'" in entry["notes"]
    refused = _metric("id_preservation", ctx, gate=True, steps=6, min_auc=round(auc + 0.01, 3))
    assert refused["status"] == "unavailable" and refused["values"] == {}
    assert f"verification AUC {auc:.3f}" in refused["reason"] and "id_preservation.steps" in refused["reason"]
    assert len(list(tmp_path.glob("synth3d-identity-*.pt"))) == 1


def test_a_collapsed_identity_embedding_is_refused(tiny_data, tmp_path, monkeypatch):
    """An embedding that maps every image to one point (what 20 steps gave on a 120-image split:
    same- and different-identity similarity both 0.731) separates nothing: AUC ½, no score."""
    from disentbench_plugins.metrics import preservation

    assert preservation.verification_auc(np.full(50, 0.731), np.full(70, 0.731)) == 0.5
    assert preservation.verification_auc(np.array([0.9, 0.8]), np.array([0.1, 0.2, 0.85])) == pytest.approx(5 / 6)

    class Collapsed(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.normalize(torch.ones(len(x), 4), dim=1)

    monkeypatch.setattr(preservation, "trained_evaluator",
                        lambda *args, **kwargs: (Collapsed(), {"steps": 20, "train_images": 120}))
    entry = _metric("id_preservation", _ctx(tiny_data, tmp_path, transfer=lambda a, b: a), gate=True)
    assert entry["status"] == "unavailable" and entry["values"] == {}
    assert "verification AUC 0.500" in entry["reason"] and "min_auc = 0.8" in entry["reason"]
    assert "trained for 20 steps of 16 images on 120 training images" in entry["reason"]


def test_pose_score_is_given_only_above_the_quality_threshold(tiny_data, tmp_path):
    """Scored on the training split, the check runs on the training images held out from the
    classifier's training; accuracy and chance are recorded beside the score."""
    ctx = _ctx(tiny_data, tmp_path, transfer=lambda a, b: b)
    entry = _metric("pose_preservation", ctx, gate=True, split="train", steps=30, min_skill=-100.0)
    assert entry["status"] == "ok", entry
    v = entry["values"]
    n_held = round(0.2 * len(tiny_data.train))
    assert f"on {n_held} real training images held out" in entry["notes"]
    skill = (v["real_accuracy"] - v["chance_accuracy"]) / (1 - v["chance_accuracy"])
    refused = _metric("pose_preservation", ctx, gate=True, split="train", steps=30, min_skill=round(skill + 0.01, 3))
    assert refused["status"] == "unavailable" and f"accuracy {v['real_accuracy']:.3f}" in refused["reason"]
    assert f"chance {v['chance_accuracy']:.3f}" in refused["reason"]
