"""The contracts the harness relies on: data containers and the Method/Dataset/Metric protocols.

Images in a :class:`Split` are uint8 ``(N, H, W, C)`` arrays (memory-mappable). Methods see
float tensors ``(N, C, H, W)`` in ``[0, 1]`` on their device and return the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # torch is imported only where a run needs it
    import torch

    from disentbench.evaluation import EvalContext
    from disentbench.training import Stage, TrainOptions, TrainResult
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


@runtime_checkable
class Method(Protocol):
    """Everything the runner calls on a trained method, exactly as
    :class:`disentbench.method.BaseMethod` (a ``torch.nn.Module``) provides it: a plugin subclasses
    BaseMethod and writes ``stages``, ``encode`` and ``decode``; the rest is inherited."""

    def stages(self, train: Split) -> list["Stage"]:
        """The training stages, in order (the harness runs the loop, precision and checkpoints)."""

    def fit(self, train: Split, options: "TrainOptions", *, seed: int = 0, checkpoint: Path | None = None,
            progress: bool = True) -> "TrainResult":
        """Train on the training split under ``seed`` (resuming from ``checkpoint`` if it exists)."""

    def encode(self, images: "torch.Tensor") -> Codes: ...

    def decode(self, class_code: "torch.Tensor", content_code: "torch.Tensor") -> "torch.Tensor": ...

    def transfer(self, class_images: "torch.Tensor", content_images: "torch.Tensor") -> "torch.Tensor":
        """Images with the class of ``class_images[k]`` and the content of ``content_images[k]``."""

    def reconstruct(self, images: "torch.Tensor") -> "torch.Tensor": ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...

    def to(self, device: Any) -> "Method": ...

    def eval(self) -> "Method": ...


@runtime_checkable
class Dataset(Protocol):
    """A dataset plugin; its ``Config`` dataclass holds resolution and protocol settings."""

    def load(self, data_dir: Path, cache_dir: Path, *, progress: bool = True) -> DataBundle: ...


@runtime_checkable
class Metric(Protocol):
    """A metric plugin: named scalars for a trained method on a dataset (keys as in its MetricSpec).

    A metric may also define ``applies(ctx) -> None``, raising :class:`MetricUnavailable` when it
    does not apply to the dataset (a person re-identification score on rendered objects); the
    harness calls it before checking the spec's weight and data requirements, so that this, not a
    missing file, is the reason recorded."""

    def compute(self, ctx: "EvalContext") -> Mapping[str, float] | MetricResult: ...
