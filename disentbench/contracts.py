"""The contracts the harness relies on: data containers, and (from :mod:`disentbench.protocols`,
where they are checked at registration) the Method/Dataset/Metric protocols.

Images in a :class:`Split` are uint8 ``(N, H, W, C)`` arrays (memory-mappable). Methods see
float tensors ``(N, C, H, W)`` in ``[0, 1]`` on their device and return the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from disentbench.protocols import Dataset, Method, Metric  # noqa: F401  (what plugins import from here)

if TYPE_CHECKING:  # torch is imported only where a run needs it
    import torch

    from disentbench.weights import WeightStore


class Unavailable(Exception):
    """Something a run needs cannot be had here (a file, weights, a library).

    The message says what is missing, where to put it and how to fetch it."""


class MetricUnavailable(Unavailable):
    """A metric cannot be computed here; recorded as unavailable (shown as n/a) with the reason."""


@dataclass
class MetricResult:
    """What :meth:`Metric.compute` may return instead of a plain dict: the values plus a note
    saying how the evaluator differs from the paper's (shown as a footnote in leaderboards)."""

    values: dict[str, float]
    notes: str = ""


@dataclass
class Split:
    """One split of a dataset: images, global class ids and (optionally) ground-truth factors."""

    images: np.ndarray  # (N, H, W, C) uint8
    classes: np.ndarray  # (N,) int64, ids consistent across the splits of one dataset
    factors: np.ndarray | None = None  # (N, F) int64, ground-truth content factors
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # per-image annotations
    _lookup_keys: np.ndarray | None = field(default=None, init=False, repr=False)
    _lookup_order: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(
                f"Split.images must be uint8 (N, H, W, C); got {self.images.dtype} {self.images.shape}"
            )
        self.classes = np.asarray(self.classes, dtype=np.int64)
        if len(self.classes) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.classes)} class labels")
        if self.factors is not None:
            self.factors = np.asarray(self.factors, dtype=np.int64)
            if self.factors.shape != (len(self.images), len(self.factor_sizes)):
                raise ValueError(
                    f"factors have shape {self.factors.shape}; expected ({len(self.images)}, "
                    f"{len(self.factor_sizes)}) for factors {self.factor_names}"
                )
            if len(self.factor_names) != len(self.factor_sizes):
                raise ValueError("factor_names and factor_sizes differ in length")
        for key, value in self.extras.items():
            if len(value) != len(self.images):
                raise ValueError(f"extra {key!r} has {len(value)} rows for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W), the shape methods see."""
        _, h, w, c = self.images.shape
        return c, h, w

    @property
    def has_factors(self) -> bool:
        return self.factors is not None and len(self.factor_sizes) > 0

    def class_ids(self) -> np.ndarray:
        return np.unique(self.classes)

    def content_labels(self) -> np.ndarray:
        """One integer per image naming its joint content-factor value (e.g. azimuth × elevation)."""
        if not self.has_factors:
            raise ValueError("this split has no ground-truth content factors")
        return np.ravel_multi_index(tuple(self.factors.T), self.factor_sizes).astype(np.int64)

    def lookup(self, classes: np.ndarray, factors: np.ndarray) -> np.ndarray:
        """Indices of the images showing ``classes[k]`` in content ``factors[k]``; -1 where none exists."""
        if not self.has_factors:
            raise ValueError("ground-truth lookup needs content factors; this split has none")
        n_content = int(np.prod(self.factor_sizes))
        if self._lookup_keys is None:
            keys = self.classes * n_content + self.content_labels()
            order = np.argsort(keys, kind="stable")
            self._lookup_keys, self._lookup_order = keys[order], order
        classes = np.asarray(classes, dtype=np.int64)
        factors = np.asarray(factors, dtype=np.int64).reshape(len(classes), len(self.factor_sizes))
        valid = np.all((factors >= 0) & (factors < np.asarray(self.factor_sizes)), axis=1)
        content = np.zeros(len(classes), dtype=np.int64)
        if valid.any():
            content[valid] = np.ravel_multi_index(tuple(factors[valid].T), self.factor_sizes)
        wanted = classes * n_content + content
        pos = np.searchsorted(self._lookup_keys, wanted)
        pos = np.clip(pos, 0, len(self._lookup_keys) - 1)
        found = valid & (self._lookup_keys[pos] == wanted)
        return np.where(found, self._lookup_order[pos], -1)

    def subset(self, index: np.ndarray) -> "Split":
        index = np.asarray(index)
        return Split(
            images=self.images[index],
            classes=self.classes[index],
            factors=None if self.factors is None else self.factors[index],
            factor_names=self.factor_names,
            factor_sizes=self.factor_sizes,
            extras={k: v[index] for k, v in self.extras.items()},
        )


@dataclass
class DataBundle:
    """A loaded dataset: named splits ("train" and "test" always) and a description of the protocol."""

    name: str
    splits: dict[str, Split]
    info: dict[str, Any] = field(default_factory=dict)  # split protocol, source checksums, preprocessing

    def __post_init__(self) -> None:
        missing = {"train", "test"} - set(self.splits)
        if missing:
            raise ValueError(f"dataset {self.name!r} lacks split(s) {sorted(missing)}")

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def test(self) -> Split:
        return self.splits["test"]


@dataclass(frozen=True)
class DataInfo:
    """What a method needs to know about its training data to build itself, and where its
    pretrained weights come from (``weights``: the run's :class:`~disentbench.weights.WeightStore`,
    passed in by the runner; ``None`` when the caller gave none)."""

    channels: int
    height: int
    width: int
    n_classes: int
    n_images: int
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    weights: "WeightStore | None" = field(default=None, compare=False, repr=False)

    @classmethod
    def from_split(cls, split: Split, weights: "WeightStore | None" = None) -> "DataInfo":
        c, h, w = split.image_shape
        return cls(c, h, w, len(split.class_ids()), len(split), split.factor_names, split.factor_sizes, weights)


class Codes(NamedTuple):
    """The two codes of an image: class (or style/identity/appearance) and content (or pose)."""

    class_code: "torch.Tensor"
    content_code: "torch.Tensor"
