"""LPIPS with a random backbone: the offline stand-in for ``lpips_transfer`` where the ImageNet
AlexNet weights (registered as ``alexnet``) cannot be had.

The same pairs and the same package (``lpips`` v0.1, its real linear heads), but the AlexNet
backbone is initialised at random under a fixed seed, so the value is reproducible. Its scale is
not LPIPS's: use it to compare methods with each other (a paper suite names it as a column's
``fallback`` and footnotes every value), never with published LPIPS numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from disentbench.contracts import MetricResult

from disentbench_plugins.metrics.lpips_transfer import build_lpips, lpips_distances, protocol_note

KEY_LPIPS = "lpips"
KEY_N_PAIRS = "n_pairs"


@dataclass
class LPIPSRandomConfig:
    split: str = "test"
    batch_size: int = 64
    backbone_seed: int = 0  # the random AlexNet is the same in every run


def random_lpips(seed: int) -> torch.nn.Module:
    """LPIPS v0.1 (AlexNet) with a backbone drawn under ``seed``, without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_lpips(None)


class LPIPSRandom:
    """LPIPS (random AlexNet backbone) between content transfers and their real targets (lower is better)."""

    Config = LPIPSRandomConfig

    def __init__(self, config: LPIPSRandomConfig | None = None) -> None:
        self.config = config or LPIPSRandomConfig()

    def compute(self, ctx: Any) -> MetricResult:
        c = self.config
        pairs = ctx.transfer_pairs(c.split)
        generated = ctx.transferred(c.split)
        d = lpips_distances(random_lpips(c.backbone_seed), generated, pairs.targets, device=ctx.device,
                            batch_size=c.batch_size)
        notes = [f"random AlexNet backbone (seed {c.backbone_seed}) with the lpips package's linear heads: "
                 "not LPIPS's scale; compare methods with each other, not with published LPIPS",
                 protocol_note(pairs.protocol)]
        return MetricResult({KEY_LPIPS: float(d.mean()), KEY_N_PAIRS: float(len(d))}, "; ".join(n for n in notes if n))
