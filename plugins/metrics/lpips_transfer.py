"""Content-transfer LPIPS (LORD Table 1; Xiao et al. Tables 1-2): the perceptual distance of
Zhang et al. 2018 (the ``lpips`` package, AlexNet backbone, v0.1 linear heads) between the
generated G(class of x_i, content of x_j) and the real image of class(x_i) in content(x_j).

Pairs come from :meth:`EvalContext.transfer_pairs`: ground-truth factors where the dataset has
them, else LORD's CelebA protocol (the content image is the nearest neighbour of the target in
landmark/keypoint space among other identities). The AlexNet ImageNet weights are the registered
``alexnet`` file (verified, loaded with ``weights_only=True``); the linear heads ship in the package.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disentbench.contracts import MetricResult
from disentbench.evaluation import to_float

from disentbench_plugins.metrics.pretrained import check_pairs, rgb, safe_load, weight_path

KEY_LPIPS = "lpips"
KEY_N_PAIRS = "n_pairs"
WEIGHTS = "alexnet"


@dataclass
class LPIPSTransferConfig:
    split: str = "test"
    batch_size: int = 64


def build_lpips(alexnet_state: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    """LPIPS v0.1 over AlexNet with the package's linear heads; the backbone takes the ImageNet
    weights in ``alexnet_state`` (a torchvision AlexNet state dict), or stays random if None."""
    import warnings

    import lpips

    with warnings.catch_warnings():  # lpips builds torchvision's AlexNet with the deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    if alexnet_state is not None:
        mapped = {}
        for slice_name, block in model.net.named_children():  # slice1..5 hold features[k] as child "k"
            for child, module in block.named_children():
                for param, _ in module.named_parameters():
                    key = f"features.{child}.{param}"
                    if key not in alexnet_state:
                        raise ValueError(f"AlexNet state dict lacks {key!r}: not a torchvision AlexNet checkpoint")
                    mapped[f"{slice_name}.{child}.{param}"] = alexnet_state[key]
        model.net.load_state_dict(mapped, strict=True)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def lpips_distances(model: torch.nn.Module, a: np.ndarray, b: np.ndarray, *, device: torch.device,
                    batch_size: int = 64) -> np.ndarray:
    """Per-pair LPIPS between uint8 (N, H, W, C) image sets ``a`` and ``b`` (anything else raises)."""
    a, b = check_pairs(a, b, "lpips_distances")
    model = model.to(device)
    a, b = rgb(a), rgb(b)
    out = []
    for start in range(0, len(a), batch_size):
        x = to_float(a[start : start + batch_size], device)
        y = to_float(b[start : start + batch_size], device)
        out.append(model(x, y, normalize=True).flatten().float().cpu())  # normalize: [0, 1] → [-1, 1]
    return torch.cat(out).numpy()


def protocol_note(protocol: str) -> str:
    if protocol.startswith("nearest-neighbour:"):
        key = protocol.split(":", 1)[1]
        return (f"pairs by nearest neighbour in the {key!r} annotation among other classes (LORD's CelebA "
                "protocol), not by ground-truth factors")
    return ""


class LPIPSTransfer:
    """LPIPS between content transfers and their real targets (lower is better)."""

    Config = LPIPSTransferConfig

    def __init__(self, config: LPIPSTransferConfig | None = None) -> None:
        self.config = config or LPIPSTransferConfig()

    def compute(self, ctx: Any) -> MetricResult:
        pairs = ctx.transfer_pairs(self.config.split)
        path: Path = weight_path(ctx, WEIGHTS)
        model = build_lpips(safe_load(path))
        generated = ctx.transferred(self.config.split)
        d = lpips_distances(model, generated, pairs.targets, device=ctx.device, batch_size=self.config.batch_size)
        return MetricResult({KEY_LPIPS: float(d.mean()), KEY_N_PAIRS: float(len(d))}, protocol_note(pairs.protocol))
