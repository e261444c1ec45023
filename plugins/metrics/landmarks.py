"""Landmark regression from class codes (LORD Table 2, last column "R(y) → c"; C-S disentanglement
Table 2 "R(s) → c"): a linear regression predicts the positions of the facial landmarks (a
content attribute: pose, expression) from the class (identity) codes. Its error on held-out codes
is *higher* the less content the class codes hold; a class code without any content information
does no better than predicting the mean position, reported beside it as ``chance_error``.

Codes are the method's class-encoder outputs on the images of ``split`` (as for ``leakage``); the
regression (scikit-learn ``LinearRegression``) is fitted on 80% of them and scored on the other
20%. The error of an image is the mean Euclidean distance between predicted and true landmarks in
pixels of the dataset's images (``Split.extras["landmarks"]``, (N, K, 2) as fractions of width and
height); images with a missing (NaN) landmark are left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from disentbench.contracts import MetricResult, MetricUnavailable

KEY_ERROR = "error"
KEY_CHANCE = "chance_error"
KEY_N = "n_images"
ANNOTATION = "landmarks"


@dataclass
class LandmarkRegressionConfig:
    split: str = "train"
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction {self.test_fraction} must be between 0 and 1")


def regression_error(features: np.ndarray, landmarks: np.ndarray, *, seed: int, test_fraction: float,
                     scale: tuple[float, float]) -> tuple[float, float]:
    """(error of a linear regression from ``features`` to ``landmarks`` (N, K, 2) on held-out rows,
    error of predicting the training mean), as mean Euclidean distances after scaling x and y by
    ``scale`` (the image width and height in pixels)."""
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import train_test_split

    n, k = landmarks.shape[:2]
    targets = (landmarks * np.asarray(scale, dtype=np.float64)).reshape(n, k * 2)
    x_tr, x_te, y_tr, y_te = train_test_split(features.astype(np.float64), targets, test_size=test_fraction,
                                              random_state=seed)

    def error(pred: np.ndarray) -> float:
        diff = (pred - y_te).reshape(len(y_te), k, 2)
        return float(np.sqrt((diff ** 2).sum(-1)).mean())

    model = LinearRegression().fit(x_tr, y_tr)
    return error(model.predict(x_te)), error(np.broadcast_to(y_tr.mean(0), y_te.shape))


class LandmarkRegression:
    """Error of landmark positions regressed linearly from class codes (higher is better)."""

    Config = LandmarkRegressionConfig

    def __init__(self, config: LandmarkRegressionConfig | None = None) -> None:
        self.config = config or LandmarkRegressionConfig()

    def compute(self, ctx: Any) -> MetricResult:
        c = self.config
        split = ctx.split(c.split)
        if ANNOTATION not in split.extras:
            raise MetricUnavailable(f"dataset {ctx.data.name!r} has no per-image {ANNOTATION!r} annotation")
        class_codes, _, idx = ctx.codes(c.split)
        marks = np.asarray(split.extras[ANNOTATION], dtype=np.float64)[idx]
        marks = marks.reshape(len(marks), -1, 2)
        keep = np.isfinite(marks).all(axis=(1, 2))
        if keep.sum() < 10:
            raise MetricUnavailable(f"only {int(keep.sum())} image(s) of split {c.split!r} have every landmark; "
                                    "the regression needs at least 10")
        h, w = split.images.shape[1:3]
        err, chance = regression_error(class_codes[keep], marks[keep], seed=ctx.seed, test_fraction=c.test_fraction,
                                       scale=(w, h))
        note = (f"{marks.shape[1]} annotated landmarks (LORD regressed 68), error in pixels of the {w}x{h} images "
                "(the paper does not state its unit)")
        return MetricResult({KEY_ERROR: err, KEY_CHANCE: chance, KEY_N: float(keep.sum())}, note)
