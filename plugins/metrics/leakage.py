"""Leakage classifiers (LORD Table 2, following Harsh Jha et al. 2018): how well the class can be
predicted from content codes (y ← c) and the content from class codes (y → c). Lower is better;
a perfectly disentangled representation sits at chance, reported beside each accuracy.

Codes are the method's encoder outputs on training images; a two-hidden-layer MLP (scikit-learn)
is trained on 80% of them and scored on the held-out 20% (stratified by the label predicted)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from disentbench.contracts import MetricResult


@dataclass
class LeakageConfig:
    split: str = "train"
    hidden: tuple[int, ...] = (256, 256)
    max_iter: int = 200
    test_fraction: float = 0.2


def held_out_accuracy(features: np.ndarray, labels: np.ndarray, *, seed: int, hidden: tuple[int, ...],
                      max_iter: int, test_fraction: float) -> tuple[float, float]:
    """(accuracy of an MLP on held-out codes, chance = share of the most frequent held-out label)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    import warnings

    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    stratify = labels if counts.min() >= 2 else None
    x_tr, x_te, y_tr, y_te = train_test_split(features, labels, test_size=test_fraction, random_state=seed,
                                              stratify=stratify)
    chance = float(np.bincount(np.unique(y_te, return_inverse=True)[1]).max() / len(y_te))
    if len(np.unique(y_tr)) < 2:
        return chance, chance
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=hidden, max_iter=max_iter,
                                                        random_state=seed, early_stopping=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_tr, y_tr)
    return float(clf.score(x_te, y_te)), chance


class Leakage:
    Config = LeakageConfig

    def __init__(self, config: LeakageConfig | None = None) -> None:
        self.config = config or LeakageConfig()

    def compute(self, ctx) -> MetricResult:
        c = self.config
        class_codes, content_codes, idx = ctx.codes(c.split)
        split = ctx.split(c.split)
        opts = dict(seed=ctx.seed, hidden=c.hidden, max_iter=c.max_iter, test_fraction=c.test_fraction)
        values: dict[str, float] = {}
        values["class_from_content"], values["chance_class"] = held_out_accuracy(
            content_codes, split.classes[idx], **opts)
        notes = ""
        if split.has_factors:
            values["content_from_class"], values["chance_content"] = held_out_accuracy(
                class_codes, split.content_labels()[idx], **opts)
        else:
            notes = "content_from_class needs ground-truth content factors, which this dataset lacks"
        return MetricResult(values, notes)
