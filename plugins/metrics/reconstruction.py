"""Reconstruction error: pixel MSE (images in [0, 1]) of decode(encode(x)) on held-out images."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from disentbench_plugins.metrics.pretrained import check_pairs


@dataclass
class ReconstructionConfig:
    split: str = "test"


class Reconstruction:
    Config = ReconstructionConfig

    def __init__(self, config: ReconstructionConfig | None = None) -> None:
        self.config = config or ReconstructionConfig()

    def compute(self, ctx) -> dict[str, float]:
        original, reconstructed = check_pairs(*ctx.reconstructed(self.config.split), "reconstruction")
        diff = original.astype(np.float32) / 255.0 - reconstructed.astype(np.float32) / 255.0
        return {"mse": float(np.mean(diff.reshape(len(diff), -1) ** 2, axis=1).mean())}
