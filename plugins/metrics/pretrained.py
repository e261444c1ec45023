"""Helpers shared by the metrics that run pretrained networks: finding their verified weight files,
loading them safely, and checking that a metric applies to the dataset at hand."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from disentbench.contracts import MetricUnavailable
from disentbench.weights import passed_store


def weight_path(ctx: Any, name: str) -> Path:
    """The verified local file of registered weights ``name`` (from the run's weight store); raises
    an :class:`~disentbench.contracts.Unavailable` that says which file to put where and how to
    fetch it. Never downloads: fetching is ``disentbench weights fetch``'s job."""
    return passed_store(ctx.weights, name, "this metric").path(name, download=False)


def safe_load(path: Path) -> Any:
    """:func:`disentbench.weights.load_checkpoint` (``weights_only=True``); a file that does not load
    that way is reported as unavailable with what to do, never unpickled unsafely."""
    from disentbench.weights import load_checkpoint

    try:
        return load_checkpoint(path, fix="delete it and fetch it again (`disentbench weights fetch NAME`)")
    except Exception as exc:  # noqa: BLE001  (CheckpointError: one line naming the file)
        raise MetricUnavailable(f"not a PyTorch checkpoint that loads safely: {exc}") from None


def check_dataset(ctx: Any, metric: str, datasets: Iterable[str], what: str) -> None:
    """Raise :class:`MetricUnavailable` unless the run's dataset is one the metric applies to
    (``"*"`` in ``datasets`` means every dataset)."""
    datasets = tuple(datasets)
    if "*" in datasets or ctx.data.name in datasets:
        return
    raise MetricUnavailable(
        f"{metric} {what}, so it applies to the datasets {', '.join(datasets) or '(none)'}; "
        f"{ctx.data.name!r} is not one of them (to apply it anyway: --set {metric}.datasets='[\"{ctx.data.name}\"]')"
    )


def _describe(images: Any) -> str:
    """Type, dtype, shape and value range of an image batch, for error messages."""
    kind = type(images).__name__
    dtype, shape = getattr(images, "dtype", None), tuple(getattr(images, "shape", ()))
    try:
        lo, hi = float(images.min()), float(images.max())
        span = f" with values in [{lo:.4g}, {hi:.4g}]"
    except Exception:  # noqa: BLE001  (empty, or not an array)
        span = ""
    return f"a {kind} of {dtype} {shape}{span}"


def check_images(images: Any, what: str) -> np.ndarray:
    """``images`` if it is what every metric takes, uint8 (N, H, W, C) with C = 1 or 3 (values 0-255,
    channels last), else a ValueError saying what came instead: float images in [0, 1] would be
    divided by 255 a second time and channels-first arrays read as the wrong axes, silently."""
    fix = "convert float (N, C, H, W) images in [0, 1] with disentbench.evaluation.to_uint8"
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise ValueError(f"{what} takes uint8 (N, H, W, C) images with values 0-255; got {_describe(images)}: {fix}")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        layout = " (channels first?)" if images.ndim == 4 and images.shape[1] in (1, 3) else ""
        raise ValueError(f"{what} takes uint8 (N, H, W, C) images with C = 1 or 3, channels last; got "
                         f"{_describe(images)}{layout}: transpose to (N, H, W, C)")
    return images


def check_pairs(a: Any, b: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Two image sets compared pair by pair: each passes :func:`check_images`, and their shapes agree."""
    a, b = check_images(a, what), check_images(b, what)
    if a.shape != b.shape:
        raise ValueError(f"{what} compares images pair by pair; got sets of shapes {a.shape} and {b.shape}: "
                         "pass one image of each set per pair, at the same size")
    return a, b


def rgb(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) with C = 1 or 3 → (N, H, W, 3): pretrained networks expect colour."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
