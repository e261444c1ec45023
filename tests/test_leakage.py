"""The leakage protocol (README "Leakage protocol"): code sampling, the seeded split, the classifier
against scikit-learn fitted outside the metric, the floor and chance baselines, degenerate inputs,
and how the tables show them."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from disentbench.contracts import Codes, DataBundle, MetricUnavailable, Split
from disentbench.evaluation import EvalContext, EvalOptions, class_stratified_cap
from disentbench.leaderboard import LABEL_SPLIT_NOTE, render
from disentbench.plugins import load_registries
from disentbench.runner import evaluate_metric
from disentbench_plugins.metrics.leakage import HeldOut, fit_and_score, held_out_split, one_hot


class FixedCodes:
    """A stand-in method whose codes are given per image (looked up by the image's bytes)."""

    def __init__(self, images: np.ndarray, class_codes: np.ndarray, content_codes: np.ndarray) -> None:
        self.row = {img.tobytes(): k for k, img in enumerate(images)}
        self.class_codes, self.content_codes = np.asarray(class_codes), np.asarray(content_codes)

    def encode(self, x: torch.Tensor) -> Codes:
        imgs = (x.permute(0, 2, 3, 1) * 255).round().byte().numpy()
        rows = [self.row[img.tobytes()] for img in imgs]
        return Codes(torch.tensor(self.class_codes[rows], dtype=torch.float32),
                     torch.tensor(self.content_codes[rows], dtype=torch.float32))


def _indexed_images(n: int) -> np.ndarray:
    """uint8 (n, 1, 2, 1) images that spell their own index, so every image is distinct."""
    i = np.arange(n)
    return np.stack([i // 256, i % 256], 1).astype(np.uint8).reshape(n, 1, 2, 1)


def _ctx(split: Split, class_codes, content_codes, *, max_codes=10000, seed=0) -> EvalContext:
    data = DataBundle("fake", {"train": split, "test": split})
    method = FixedCodes(split.images, class_codes, content_codes)
    return EvalContext(method, data, device=torch.device("cpu"), seed=seed, options=EvalOptions(max_codes=max_codes))


def _leakage(ctx, **config):
    regs = load_registries()
    return evaluate_metric(regs.metrics.get("leakage"), {"hidden": [16], "max_iter": 60, **config}, ctx, regs)


def _signal_codes(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(labels), 6))
    x[:, 0] += 1.5 * labels
    return x


def test_metric_equals_scikit_learn_fitted_outside_on_the_same_split():
    labels = np.repeat(np.arange(5), 30)
    content = _signal_codes(labels)
    split = Split(_indexed_images(len(labels)), labels)
    entry = _leakage(_ctx(split, np.zeros((len(labels), 2)), content, seed=3), min_per_class=5)
    assert entry["status"] == "ok", entry
    v = entry["values"]
    # the same split and classifier, from the module's functions ...
    held = held_out_split(labels, seed=3, test_fraction=0.2, val_fraction=0.1)
    score = fit_and_score(content, labels, held, seed=3, hidden=(16,), max_iter=60, patience=10)
    assert v["class_from_content"] == score.accuracy
    # ... and from scikit-learn directly: scaler on the training part only, as many epochs as kept
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(content[held.train])
    ref = MLPClassifier(hidden_layer_sizes=(16,), random_state=np.random.RandomState(3), max_iter=score.epochs,
                        n_iter_no_change=10**9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(scaler.transform(content[held.train]), labels[held.train])
    x_test = scaler.transform(content[held.test])
    assert ref.score(x_test, labels[held.test]) == pytest.approx(v["class_from_content"], abs=1e-12)
    mine_scaler, mine = score.model
    np.testing.assert_allclose(mine.predict_proba(mine_scaler.transform(content[held.test])),
                               ref.predict_proba(x_test), atol=1e-10)
    assert v["class_from_content"] > v["chance_class"]  # the codes carry the class (60 epochs underfit: 0.27)
    assert v["chance_class"] == pytest.approx(1 / 5) and v["majority_class"] == pytest.approx(1 / 5)
    assert v["n_codes"] == 150 and "floor_class_from_content" not in v  # no factors, no floor
    assert "150 codes" in entry["notes"] and "k=5" in entry["notes"]


def test_split_is_seeded_stratified_and_never_validates_on_the_scored_part():
    labels = np.repeat(np.arange(4), [5, 9, 20, 30])
    a = held_out_split(labels, seed=1, test_fraction=0.2, val_fraction=0.2)
    b = held_out_split(labels, seed=1, test_fraction=0.2, val_fraction=0.2)
    c = held_out_split(labels, seed=2, test_fraction=0.2, val_fraction=0.2)
    assert np.array_equal(a.test, b.test) and np.array_equal(a.val, b.val) and not np.array_equal(a.test, c.test)
    parts = [set(a.train), set(a.val), set(a.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(a.train) + len(a.val) + len(a.test) == len(labels)
    assert set(labels[a.test]) == set(labels[a.train]) == {0, 1, 2, 3}  # every class in both parts
    assert np.bincount(labels[a.test]).tolist() == [1, 2, 4, 6]  # 20% of each class
    # by groups: no group value on both sides; every scored label is a training label
    groups = np.tile(np.arange(8), 6)
    g = held_out_split(np.repeat(np.arange(6), 8), groups, seed=0, test_fraction=0.25, val_fraction=0.1)
    assert not set(groups[g.test]) & set(groups[np.concatenate([g.train, g.val])])
    assert len(set(groups[g.test])) == 2 and len(g.test) == 12


@pytest.fixture
def synth_train(tiny_data):
    return tiny_data.splits["train"]


def test_perfect_code_on_synth3d_scores_the_floor_which_is_chance_not_zero(synth_train):
    """One image per (object, view): a perfectly disentangled code scores exactly chance under the
    held-out-factor protocol (a random image split scored it 0.000 before)."""
    s = synth_train
    ctx = _ctx(s, one_hot(s.classes), s.factors.astype(float))
    entry = _leakage(ctx)
    assert entry["status"] == "ok", entry
    v = entry["values"]
    n_classes, n_content = len(np.unique(s.classes)), int(np.prod(s.factor_sizes))
    assert v["chance_class"] == pytest.approx(1 / n_classes) and v["chance_content"] == pytest.approx(1 / n_content)
    assert v["floor_class_from_content"] == pytest.approx(v["chance_class"]) and v["floor_class_from_content"] > 0
    assert v["floor_content_from_class"] == pytest.approx(v["chance_content"]) and v["floor_content_from_class"] > 0
    assert v["class_from_content"] == pytest.approx(v["floor_class_from_content"])
    assert v["content_from_class"] == pytest.approx(v["floor_content_from_class"])
    assert "held-out content values" in entry["notes"] and "held-out classes" in entry["notes"]


def test_fully_leaky_content_code_scores_one(synth_train):
    s = synth_train
    entry = _leakage(_ctx(s, one_hot(s.classes), one_hot(s.classes)), hidden=[32], max_iter=300)
    assert entry["status"] == "ok", entry
    v = entry["values"]
    assert v["class_from_content"] == 1.0
    assert v["floor_class_from_content"] < 0.5  # the reference code on the same split is not leaky


def test_stratified_cap_keeps_at_least_k_codes_per_class():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), [1, 3, 4, 50, 200, 12])
    s = class_stratified_cap(labels, cap=40, k=4, rng=rng)
    counts = np.bincount(labels[s.index], minlength=6)
    assert len(s.index) == 40 and s.capped and s.n_small_classes == 2 and s.n_classes == 4
    assert counts[:2].tolist() == [0, 0] and (counts[2:] >= 4).all()
    assert counts[4] > counts[3] > counts[5]  # the rest in proportion to the class sizes (in expectation)
    # a cap too small for k per class keeps a random subset of cap // k classes, each with k or more
    many = np.repeat(np.arange(300), 20)
    t = class_stratified_cap(many, cap=500, k=5, rng=np.random.default_rng(1))
    kept = np.bincount(many[t.index], minlength=300)
    assert t.n_classes == 100 == (kept > 0).sum() and kept[kept > 0].min() >= 5 and t.n_capped_classes == 200
    # seeded, and every code when the split fits in the cap
    assert np.array_equal(t.index, class_stratified_cap(many, cap=500, k=5, rng=np.random.default_rng(1)).index)
    assert np.array_equal(class_stratified_cap(many, cap=0, k=5, rng=rng).index, np.arange(len(many)))


def test_capped_metric_records_the_cap(synth_train):
    s = synth_train
    entry = _leakage(_ctx(s, one_hot(s.classes), s.factors.astype(float), max_codes=36), min_per_class=5)
    assert entry["status"] == "ok", entry
    assert entry["values"]["n_codes"] == 36 and "class-stratified cap 36" in entry["notes"]


def test_too_few_codes_per_class_is_unavailable():
    labels = np.repeat(np.arange(10), 3)
    split = Split(_indexed_images(30), labels)
    entry = _leakage(_ctx(split, np.zeros((30, 2)), _signal_codes(labels)), min_per_class=4)
    assert entry["status"] == "unavailable" and "0 class(es) with at least k=4" in entry["reason"]
    assert entry["values"] == {}


def test_one_class_is_unavailable():
    labels = np.zeros(40, dtype=np.int64)
    split = Split(_indexed_images(40), labels)
    entry = _leakage(_ctx(split, np.zeros((40, 2)), _signal_codes(labels)))
    assert entry["status"] == "unavailable" and "1 class(es)" in entry["reason"]
    # one label among the training labels, whatever the caller: unavailable, never (chance, chance)
    held = HeldOut(train=np.arange(8), val=np.zeros(0, np.int64), test=np.array([8, 9]), by="label")
    with pytest.raises(MetricUnavailable, match="1 class value"):
        fit_and_score(np.zeros((10, 2)), np.array([0] * 8 + [1, 1]), held, seed=0, hidden=(4,), max_iter=5,
                      patience=2, what="class")


def _record(method, acc, *, label_split=False):
    values = {"class_from_content": acc, "chance_class": 0.167, "majority_class": 0.2,
              "floor_class_from_content": 0.167}
    record = {"run_id": f"synth3d/{method}/seed0-abc", "status": "finished", "method": method, "dataset": "synth3d",
              "seed": 0, "supervision": "", "config_hash": "abcdef123456",
              "metrics": {"leakage": {"status": "ok", "values": values, "notes": "",
                                      "directions": {"class_from_content": "min", "chance_class": "info",
                                                     "majority_class": "info", "floor_class_from_content": "info"}},
                          "transfer_error": {"status": "ok", "values": {"mse": 0.01}, "notes": "",
                                             "directions": {"mse": "min"}}}}
    if label_split:
        record["method_info"] = {"latent_split": {"fitted": True, "class_dims": [0, 3]}}
    return record


def test_leaderboard_shows_floor_and_chance_and_footnotes_label_split_codes():
    out = render([_record("lord", 0.3), _record("betavae", 0.2, label_split=True)], cost=False)
    assert ("- leakage.class_from_content: chance 0.167, majority 0.200, floor 0.167 (floor: a perfectly "
            "disentangled reference code on the same split)") in out
    assert "floor_class_from_content" not in out and "chance_class" not in out  # not as columns
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    note = next(line for line in out.splitlines() if LABEL_SPLIT_NOTE in line)
    k = note.split(".")[0]
    assert f"**0.200** [{k}]" in rows["betavae"] and f"[{k}]" not in rows["lord"]
    assert rows["betavae"].count(f"[{k}]") == 1  # on the leakage column only, not transfer_error


def test_paper_table_footnotes_leakage_of_label_split_codes(tmp_path):
    import test_suites
    from disentbench import paper_tables as pt

    suite, plan, records = test_suites._fixture(tmp_path)
    for r in records:
        if "/autoencoder/" in r["run_id"]:
            r["method_info"] = {"latent_split": {"fitted": True}}
    out = pt.render(suite, plan, records, pt.MetricInfo.from_registries(test_suites.REGS))
    k = next(line for line in out.splitlines() if LABEL_SPLIT_NOTE in line).split(".")[0]
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines() if line.startswith("| ")}
    assert f"[{k}]" in rows["Autoencoder"][4] and f"[{k}]" not in "".join(rows["Autoencoder"][:4])  # leakage only
    assert f"[{k}]" not in "".join(rows["LORD"])
    assert "- Cars3D y ← c: chance 0.100" in out
