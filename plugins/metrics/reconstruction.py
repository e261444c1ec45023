"""Reconstruction error: pixel MSE (images in [0, 1]) of decode(encode(x)) on held-out images."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ReconstructionConfig:
    split: str = "test"


class Reconstruction:
    Config = ReconstructionConfig

    def __init__(self, config: ReconstructionConfig | None = None) -> None:
        self.config = config or ReconstructionConfig()

    def compute(self, ctx) -> dict[str, float]:
        original, reconstructed = ctx.reconstructed(self.config.split)
        diff = original.astype(np.float32) / 255.0 - reconstructed.astype(np.float32) / 255.0
        return {"mse": float(np.mean(diff.reshape(len(diff), -1) ** 2, axis=1).mean())}
