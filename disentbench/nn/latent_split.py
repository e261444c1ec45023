"""Splitting one unsupervised latent vector into a "class" part and a "content" part.

Unsupervised methods with a single latent (β-VAE, FactorVAE) have no class or content code; their
papers (and the papers that compare against them) pick dimensions by hand after looking at latent
traversals. For the benchmark's metrics the split has to be reproducible, so it is made by a fixed
rule after training: every dimension of the posterior mean is scored by how much of its variance
over the training split the class label explains (the correlation ratio η², the between-class
share of the variance), the ``k`` best-scoring dimensions become the class code and the rest the
content code. Ties go to the lower index. The mask lives in a buffer, so saved states and
checkpoints carry it.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn


def correlation_ratio(codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """η² per dimension: between-class variance / total variance of ``codes`` (N, D), in [0, 1].

    A dimension that does not vary over the data (an inactive VAE unit) scores 0."""
    codes = codes.double()
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), codes.shape[1], dtype=codes.dtype, device=codes.device)
    sums.index_add_(0, inverse, codes)
    means = sums / counts[:, None].to(codes.dtype)
    grand = codes.mean(dim=0)
    between = (counts[:, None].to(codes.dtype) * (means - grand).pow(2)).sum(dim=0)
    total = (codes - grand).pow(2).sum(dim=0)
    return torch.where(total > 1e-12 * len(codes), between / total.clamp_min(1e-300), torch.zeros_like(total)).float()


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` highest scores; ties go to the lower index (a stable ordering)."""
    order = sorted(range(len(scores)), key=lambda d: (-float(scores[d]), d))
    mask = torch.zeros(len(scores), dtype=torch.bool)
    mask[order[:k]] = True
    return mask


class LatentSplit(nn.Module):
    """Which latent dimensions are "class" and which "content"; a buffer, so it is saved and loaded.

    Before :meth:`fit` the first ``class_dims`` dimensions are the class part (a placeholder that
    keeps shapes right); :meth:`fit` replaces it with the η² ranking."""

    def __init__(self, latent_dim: int, class_dims: int) -> None:
        super().__init__()
        if not 0 < class_dims < latent_dim:
            raise ValueError(
                f"class_dims={class_dims} must be between 1 and latent_dim - 1 = {latent_dim - 1}, so that both "
                "the class and the content code have at least one dimension"
            )
        self.latent_dim, self.class_dims = latent_dim, class_dims
        mask = torch.zeros(latent_dim, dtype=torch.bool)
        mask[:class_dims] = True
        self.register_buffer("class_mask", mask)
        self.register_buffer("scores", torch.zeros(latent_dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def class_index(self) -> torch.Tensor:
        return torch.nonzero(self.class_mask).flatten()

    @property
    def content_index(self) -> torch.Tensor:
        return torch.nonzero(~self.class_mask).flatten()

    @torch.no_grad()
    def fit(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        """Rank dimensions of ``codes`` (N, D) by η² against ``labels`` (N,) and keep the top k."""
        scores = correlation_ratio(codes.float().cpu(), labels.cpu())
        self.scores.copy_(scores.to(self.scores.device))
        self.class_mask.copy_(top_k_mask(scores, self.class_dims).to(self.class_mask.device))
        self.fitted.fill_(True)

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class part, content part) of ``z`` (N, D), each keeping the dimensions' order."""
        return z[:, self.class_index], z[:, self.content_index]

    def merge(self, class_part: torch.Tensor, content_part: torch.Tensor) -> torch.Tensor:
        """Put the two parts back in their places: the inverse of :meth:`split`."""
        z = class_part.new_empty(class_part.shape[0], self.latent_dim)
        z[:, self.class_index] = class_part
        z[:, self.content_index] = content_part
        return z

    def info(self) -> dict[str, Any]:
        """What goes into the run record (``method_info``)."""
        return {
            "latent_split": {
                "rule": "top-k latent dimensions by correlation ratio eta^2 with the class label on the training "
                        "split (posterior means) -> class code; the rest -> content code",
                "fitted": bool(self.fitted),
                "class_dims": self.class_index.tolist(),
                "content_dims": self.content_index.tolist(),
                "eta2": [round(float(s), 4) for s in self.scores],
            }
        }


@torch.no_grad()
def encode_split(encode: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray, device: torch.device,
                 batch_size: int = 256) -> torch.Tensor:
    """``encode`` applied to uint8 (N, H, W, C) images in batches; returns (N, D) on the CPU."""
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
        out.append(encode(x.permute(0, 3, 1, 2).float().div_(255.0)).float().cpu())
    return torch.cat(out)
