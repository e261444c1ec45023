"""Leakage classifiers (LORD Table 2, following Harsh Jha et al. 2018): how well the class can be
predicted from content codes (class ← content, y ← c) and the content from class codes
(content ← class, y → c). Lower is better.

The protocol (recorded in every result, see ``notes`` and the README's "Leakage protocol"):

- **Codes.** The method's codes of the images of ``split`` (the training split, as in LORD):
  every image, or a class-stratified cap (:func:`disentbench.evaluation.class_stratified_cap`)
  that keeps at least ``min_per_class`` (k) codes of every class it keeps. Classes with fewer than
  k images are left out; fewer than two classes left → unavailable, never a number.
- **Split (seeded by the run's seed).** A classifier can only score above chance on what it saw
  in training, so every scored label must be a training label, and on datasets with ground-truth
  content factors the split is by *the other factor*: class ← content is scored on codes of
  held-out content values (every class is in training), content ← class on codes of held-out
  classes (every content value is in training). A random split of images would not do there: with
  one image per (class, content) combination (Cars3D, synth3d) the held-out image of class c in
  content j is the one combination the classifier never saw, so a perfectly disentangled code is
  pushed *below* chance (exactly 0 on synth3d). Without content factors, class ← content is scored
  on a split stratified by class (every class in both parts).
- **Classifier.** StandardScaler + MLP (scikit-learn, Adam), both fitted on the training part
  only; early stopping on the cross-entropy of a validation part carved from the training part (the
  best epoch's weights are kept), never on the scored part.
- **Baselines beside each accuracy.** ``chance_*``: 1 / number of labels; ``majority_*``: the
  share of the most frequent label in the scored part; ``floor_*`` (datasets with ground-truth
  factors): the same classifier on the same split fed a perfectly disentangled reference code
  (class ← content: the true content factors one-hot; content ← class: the true class one-hot),
  i.e. what "perfect" scores on that split.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from disentbench.contracts import MetricResult, MetricUnavailable
from disentbench.config import allowed, bounds

KEY_CLASS = "class_from_content"
KEY_CONTENT = "content_from_class"
KEY_CHANCE_CLASS, KEY_MAJORITY_CLASS, KEY_FLOOR_CLASS = "chance_class", "majority_class", "floor_class_from_content"
KEY_CHANCE_CONTENT, KEY_MAJORITY_CONTENT, KEY_FLOOR_CONTENT = ("chance_content", "majority_content",
                                                              "floor_content_from_class")
KEY_N = "n_codes"


@dataclass
class LeakageConfig:
    split: str = "train"
    hidden: tuple[int, ...] = (256, 256)
    max_iter: int = 200  # epochs at most
    patience: int = 10  # epochs without a lower validation cross-entropy before training stops
    test_fraction: float = 0.2  # of the images (or of the held-out factor's values) scored
    val_fraction: float = 0.1  # of the training part, for early stopping
    min_per_class: int = 5  # k: classes with fewer codes are left out; the cap keeps k of each
    max_codes: int = field(default=-1, metadata=allowed(bounds(-1, integer=True, note="-1 = eval.max_codes, 0 = every code")))
    # cap on the codes used: -1 = eval.max_codes, 0 = every code of the split

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"leakage.test_fraction={self.test_fraction} must be between 0 and 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"leakage.val_fraction={self.val_fraction} must be in [0, 1) (0: no early stopping)")
        if self.min_per_class < 2:
            raise ValueError(f"leakage.min_per_class={self.min_per_class} must be at least 2 (one code to train on, "
                             "one to score)")


@dataclass
class HeldOut:
    """Indices of the training, validation and scored parts; ``dropped``: scored codes left out
    because their label is not among the training labels."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    by: str  # "label" (stratified) or "group" (held-out values of the other factor)
    dropped: int = 0


def _round(x: float) -> int:
    return int(np.floor(x + 0.5))


def held_out_split(labels: np.ndarray, groups: np.ndarray | None = None, *, seed: int, test_fraction: float,
                   val_fraction: float) -> HeldOut:
    """A seeded split of codes into training, validation and scored parts.

    ``groups`` None: stratified by ``labels`` (of every label with at least 2 codes, a
    ``test_fraction`` share, at least 1 and at most all but 1, is scored). ``groups`` given: the codes
    of a random ``test_fraction`` of the group values are scored, so no group value is in both parts.
    Scored codes whose label no training code has are dropped (counted). The validation part is a
    ``val_fraction`` of the training part, drawn so that every training label keeps a training code."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 0x1EA4])
    if groups is None:
        parts = []
        for lab in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == lab))
            if len(members) >= 2:
                parts.append(members[: min(len(members) - 1, max(1, _round(test_fraction * len(members))))])
        test = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        by = "label"
    else:
        values = np.unique(groups)
        if len(values) < 2:
            return HeldOut(np.arange(len(labels)), np.zeros(0, np.int64), np.zeros(0, np.int64), "group")
        held = rng.choice(values, size=min(len(values) - 1, max(1, _round(test_fraction * len(values)))), replace=False)
        test = np.flatnonzero(np.isin(groups, held))
        by = "group"
    train_all = np.setdiff1d(np.arange(len(labels)), test)
    seen = np.isin(labels[test], labels[train_all])
    dropped = int((~seen).sum())
    test = test[seen]
    order = rng.permutation(train_all)
    _, first = np.unique(labels[order], return_index=True)
    spare = np.delete(order, first)  # every training label keeps at least one training code
    val = np.sort(spare[: min(len(spare), _round(val_fraction * len(train_all)))])
    train = np.setdiff1d(train_all, val)
    return HeldOut(train.astype(np.int64), val.astype(np.int64), test.astype(np.int64), by, dropped)


@dataclass
class Score:
    accuracy: float
    chance: float  # 1 / number of labels
    majority: float  # share of the most frequent label in the scored part
    epochs: int  # epochs of the weights kept (the best on the validation part)
    model: Any = field(default=None, repr=False)  # the fitted (scaler, classifier)


def fit_and_score(features: np.ndarray, labels: np.ndarray, split: HeldOut, *, seed: int, hidden: tuple[int, ...],
                  max_iter: int, patience: int, what: str = "labels") -> Score:
    """Fit StandardScaler + MLP on ``split.train`` (one epoch of Adam per ``partial_fit``; the
    weights of the epoch with the lowest cross-entropy on ``split.val`` are kept, training stops after
    ``patience`` epochs without a better one; without a validation part all ``max_iter`` epochs run),
    and score it on ``split.test``. Raises :class:`MetricUnavailable` for degenerate inputs."""
    from sklearn.metrics import log_loss
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    labels = np.asarray(labels)
    y_tr = labels[split.train]
    classes = np.unique(y_tr)
    if len(classes) < 2:
        raise MetricUnavailable(f"the training part holds {len(classes)} {what} value(s); predicting {what} needs at "
                                "least 2 (lower leakage.min_per_class or use a split with more classes)")
    if len(split.test) == 0:
        raise MetricUnavailable(f"no code is left to score {what} on (every scored label must also be a training "
                                "label); use a split with more codes per label")
    scaler = StandardScaler().fit(x[split.train])
    xs_tr, xs_val, xs_te = (scaler.transform(x[i]) if len(i) else x[i] for i in (split.train, split.val, split.test))
    clf = MLPClassifier(hidden_layer_sizes=tuple(hidden), random_state=np.random.RandomState(seed), max_iter=1)
    best_loss, best_epoch, best_weights = np.inf, 0, None
    for epoch in range(1, max_iter + 1):
        clf.partial_fit(xs_tr, y_tr, classes=classes if epoch == 1 else None)
        if len(split.val) == 0:
            best_epoch = epoch
            continue
        loss = float(log_loss(labels[split.val], clf.predict_proba(xs_val), labels=clf.classes_))
        if loss < best_loss:
            best_loss, best_epoch = loss, epoch
            best_weights = ([c.copy() for c in clf.coefs_], [b.copy() for b in clf.intercepts_])
        elif epoch - best_epoch >= patience:
            break
    if best_weights is not None:
        clf.coefs_, clf.intercepts_ = best_weights
    y_te = labels[split.test]
    counts = np.unique(y_te, return_counts=True)[1]
    n_labels = len(np.unique(labels[np.concatenate([split.train, split.val, split.test])]))
    return Score(float(clf.score(xs_te, y_te)), 1.0 / n_labels, float(counts.max() / len(y_te)), best_epoch,
                 (scaler, clf))


def held_out_accuracy(features: np.ndarray, labels: np.ndarray, *, seed: int, hidden: tuple[int, ...],
                      max_iter: int, test_fraction: float, val_fraction: float = 0.1,
                      patience: int = 10) -> tuple[float, float]:
    """(accuracy on a held-out part stratified by label, chance = 1 / number of labels)."""
    split = held_out_split(labels, seed=seed, test_fraction=test_fraction, val_fraction=val_fraction)
    s = fit_and_score(features, labels, split, seed=seed, hidden=hidden, max_iter=max_iter, patience=patience)
    return s.accuracy, s.chance


def one_hot(columns: np.ndarray) -> np.ndarray:
    """Concatenated one-hot encodings of each column of ``columns`` (N,) or (N, F)."""
    columns = np.asarray(columns).reshape(len(columns), -1)
    parts = []
    for col in columns.T:
        values, inverse = np.unique(col, return_inverse=True)
        parts.append(np.eye(len(values))[inverse.ravel()])
    return np.concatenate(parts, axis=1)


class Leakage:
    Config = LeakageConfig

    def __init__(self, config: LeakageConfig | None = None) -> None:
        self.config = config or LeakageConfig()

    def compute(self, ctx) -> MetricResult:
        c = self.config
        split = ctx.split(c.split)
        cap = ctx.options.max_codes if c.max_codes < 0 else c.max_codes
        sample = ctx.stratified_index(c.split, cap=cap, k=c.min_per_class)
        if sample.n_classes < 2:
            raise MetricUnavailable(
                f"split {c.split!r} of dataset {ctx.data.name!r} has {sample.n_classes} class(es) with at least "
                f"k={c.min_per_class} images ({sample.n_small_classes} with fewer left out); leakage needs 2 such "
                "classes (lower leakage.min_per_class, at least 2, or use a split with more images per class)")
        class_codes, content_codes, idx = ctx.codes(c.split, index=sample.index)
        classes = split.classes[idx]
        opts = dict(seed=ctx.seed, hidden=tuple(c.hidden), max_iter=c.max_iter, patience=c.patience)
        fractions = dict(seed=ctx.seed, test_fraction=c.test_fraction, val_fraction=c.val_fraction)
        values: dict[str, float] = {KEY_N: float(len(idx))}
        described = []

        def part(name: str, s: HeldOut, how: str) -> str:
            drop = f", {s.dropped} dropped for a label not in training" if s.dropped else ""
            return (f"{name} scored on {len(s.test)} codes {how} ({len(s.train)} training, {len(s.val)} "
                    f"validation{drop})")

        if split.has_factors:
            content = split.content_labels()[idx]
            factors = split.factors[idx]
            held = held_out_split(classes, content, **fractions)
            s = fit_and_score(content_codes, classes, held, what="class", **opts)
            floor = fit_and_score(one_hot(factors), classes, held, what="class", **opts)
            values.update({KEY_CLASS: s.accuracy, KEY_CHANCE_CLASS: s.chance, KEY_MAJORITY_CLASS: s.majority,
                           KEY_FLOOR_CLASS: floor.accuracy})
            described.append(part("class←content", held, "of held-out content values"))
            held = held_out_split(content, classes, **fractions)
            s = fit_and_score(class_codes, content, held, what="content", **opts)
            floor = fit_and_score(one_hot(classes), content, held, what="content", **opts)
            values.update({KEY_CONTENT: s.accuracy, KEY_CHANCE_CONTENT: s.chance, KEY_MAJORITY_CONTENT: s.majority,
                           KEY_FLOOR_CONTENT: floor.accuracy})
            described.append(part("content←class", held, "of held-out classes"))
            floors = ("floor: the same classifier on the same split fed the true content factors one-hot "
                      "(class←content) or the true class one-hot (content←class)")
        else:
            held = held_out_split(classes, **fractions)
            s = fit_and_score(content_codes, classes, held, what="class", **opts)
            values.update({KEY_CLASS: s.accuracy, KEY_CHANCE_CLASS: s.chance, KEY_MAJORITY_CLASS: s.majority})
            described.append(part("class←content", held, "held out per class (stratified)"))
            floors = ("no floor and no content←class: the dataset has no ground-truth content factors")
        left_out = []
        if sample.n_small_classes:
            left_out.append(f"{sample.n_small_classes} class(es) with fewer than k images left out")
        if sample.n_capped_classes:
            left_out.append(f"{sample.n_capped_classes} class(es) left out to fit k per class in the cap")
        how = f"class-stratified cap {sample.cap}" if sample.capped else "every code"
        notes = (f"leakage protocol: {len(idx)} codes of split {c.split!r} from {sample.n_classes} classes ({how}, "
                 f"k={c.min_per_class}{'; ' + '; '.join(left_out) if left_out else ''}); " + "; ".join(described)
                 + f"; StandardScaler + MLP {tuple(c.hidden)} (Adam, at most {c.max_iter} epochs, early stopping on "
                 f"validation cross-entropy, patience {c.patience}) fitted on the training part only; split seeded by the "
                 f"run's seed; {floors}")
        return MetricResult(values, notes)
