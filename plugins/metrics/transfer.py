"""Ground-truth content transfer (LORD Table 1 protocol, weight-free): for held-out test images
x_i, x_j of different classes, generate G(E_y(x_i), E_c(x_j)) and compare it with the real image
of class(x_i) in the content factors of x_j. Pixel MSE (images in [0, 1]) and SSIM."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from disentbench.contracts import MetricResult

from disentbench_plugins.metrics.pretrained import check_pairs


@dataclass
class TransferErrorConfig:
    split: str = "test"


class TransferError:
    Config = TransferErrorConfig

    def __init__(self, config: TransferErrorConfig | None = None) -> None:
        self.config = config or TransferErrorConfig()

    def compute(self, ctx) -> MetricResult:
        from skimage.metrics import structural_similarity

        pairs = ctx.transfer_pairs(self.config.split)
        generated, target = check_pairs(ctx.transferred(self.config.split), pairs.targets, "transfer_error")
        diff = generated.astype(np.float32) / 255.0 - target.astype(np.float32) / 255.0
        mse = float(np.mean(diff.reshape(len(diff), -1) ** 2, axis=1).mean())
        multichannel = generated.shape[-1] > 1
        ssim = float(np.mean([
            structural_similarity(g, t, data_range=255, channel_axis=-1 if multichannel else None)
            if multichannel else structural_similarity(g[..., 0], t[..., 0], data_range=255)
            for g, t in zip(generated, target)
        ]))
        return MetricResult({"mse": mse, "ssim": ssim, "n_pairs": float(len(generated))})
