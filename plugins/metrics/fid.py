"""Fréchet Inception Distance (Xiao et al. Tables 1-2): ``torch-fidelity``'s FID, on pool3 features
of the TensorFlow-2015 Inception-v3, between the set of generated content transfers and the set of
their real target images (the same pairs as ``lpips_transfer``).

FID is biased upwards at small N and its covariances are rank-deficient below 2048 images, so the
number of images is reported beside it (compare only values computed from the same N). The
Inception weights are the registered ``inception_fid`` file: verified, and refused unless it loads
with ``weights_only=True`` (torch-fidelity itself unpickles it without that guard).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from disentbench.contracts import MetricResult, MetricUnavailable

from disentbench_plugins.metrics.lpips_transfer import protocol_note
from disentbench_plugins.metrics.pretrained import check_images, rgb, safe_load, weight_path

KEY_FID = "fid"
KEY_N_IMAGES = "n_images"
WEIGHTS = "inception_fid"


@dataclass
class FIDConfig:
    split: str = "test"
    max_images: int = 0  # per set; 0 = every pair of eval.n_pairs
    batch_size: int = 32
    # Inception features: "2048" = pool3, as the papers; smaller layers only for smoke runs, since
    # FID's matrix square root over 2048 dimensions alone takes about a minute on a 2-core CPU
    feature_layer: Literal["64", "192", "768", "2048"] = "2048"


class _Images(torch.utils.data.Dataset):
    """uint8 (N, H, W, C) → the uint8 (3, H, W) tensors torch-fidelity reads."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = rgb(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, k: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images[k])).permute(2, 0, 1)


def frechet_inception_distance(generated: np.ndarray, real: np.ndarray, weights: Path, *,
                               device: torch.device, batch_size: int = 32, feature_layer: str = "2048") -> float:
    """FID between two uint8 image sets with torch-fidelity and the Inception file ``weights``."""
    import torch_fidelity

    generated = check_images(generated, "frechet_inception_distance (generated)")
    real = check_images(real, "frechet_inception_distance (real)")
    if min(len(generated), len(real)) < 2:
        raise MetricUnavailable(f"FID needs at least 2 images per set; got {len(generated)} and {len(real)}")
    safe_load(weights)  # refuse a file that would need unsafe unpickling before torch-fidelity loads it
    metrics = torch_fidelity.calculate_metrics(
        input1=_Images(generated), input2=_Images(real), fid=True, cuda=device.type == "cuda",
        batch_size=batch_size, cache=False, verbose=False, samples_shuffle=False, save_cpu_ram=True,
        feature_extractor_weights_path=str(weights), feature_layer_fid=feature_layer,
    )
    return float(metrics[torch_fidelity.KEY_METRIC_FID])


class FID:
    """FID of generated transfers against their real targets (lower is better)."""

    Config = FIDConfig

    def __init__(self, config: FIDConfig | None = None) -> None:
        self.config = config or FIDConfig()

    def compute(self, ctx: Any) -> MetricResult:
        c = self.config
        pairs = ctx.transfer_pairs(c.split)
        path = weight_path(ctx, WEIGHTS)
        generated, real = ctx.transferred(c.split), pairs.targets
        if c.max_images:
            generated, real = generated[: c.max_images], real[: c.max_images]
        value = frechet_inception_distance(generated, real, path, device=ctx.device, batch_size=c.batch_size,
                                           feature_layer=c.feature_layer)
        notes = [protocol_note(pairs.protocol)]
        if c.feature_layer != "2048":
            notes.append(f"FID on {c.feature_layer}-dimensional Inception features (fid.feature_layer), not "
                         "pool3 as in the papers: not comparable with published FIDs")
        if len(generated) < int(c.feature_layer):
            notes.append(f"FID from {len(generated)} images per set, fewer than its {c.feature_layer} feature "
                         "dimensions: biased upwards; compare only values computed from the same number of images")
        return MetricResult({KEY_FID: value, KEY_N_IMAGES: float(len(generated))}, "; ".join(n for n in notes if n))
