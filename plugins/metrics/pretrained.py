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


def rgb(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) with C = 1 or 3 → (N, H, W, 3): pretrained networks expect colour."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
