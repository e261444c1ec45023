"""Random image augmentations on batches of tensors, drawn from a caller-supplied generator.

The augmentations of unsupervised instance discrimination (Wu et al. 2018): random resized crop,
horizontal flip, colour jitter (brightness, contrast, saturation) and random grayscale. They run on
the training device and take their randomness from ``rand`` (e.g. a training step's ``ctx.rand``),
never from global state, so training stays reproducible and checkpoints resume exactly.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

Rand = Callable[..., torch.Tensor]  # rand(*shape) -> uniform [0, 1) tensor on the images' device


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def random_resized_crop(x: torch.Tensor, rand: Rand, scale: tuple[float, float] = (0.2, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: float = 0.5) -> torch.Tensor:
    """Crop a random area fraction in ``scale`` with aspect ratio in ``ratio`` (log-uniform), resize it
    back to the full size (bilinear) and mirror it horizontally with probability ``flip``."""
    n = x.shape[0]
    u = rand(n, 5)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    w = (area * log_r.exp()).sqrt().clamp(max=1.0)
    h = (area / log_r.exp()).sqrt().clamp(max=1.0)
    cx = (1 - w) * (2 * u[:, 2] - 1)  # the crop stays inside the image
    cy = (1 - h) * (2 * u[:, 3] - 1)
    sign = torch.where(u[:, 4] < flip, -1.0, 1.0).to(x.dtype)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(x: torch.Tensor, rand: Rand, strength: float = 0.4, grayscale: float = 0.2) -> torch.Tensor:
    """Scale brightness, contrast and saturation (in that order) by factors drawn uniformly from
    [1 − strength, 1 + strength], then make images gray with probability ``grayscale``. Images stay
    in [0, 1]."""
    n = x.shape[0]
    u = rand(n, 4).to(x.dtype)
    factors = 1 + strength * (2 * u[:, :3] - 1)
    x = (x * factors[:, 0].view(n, 1, 1, 1)).clamp(0, 1)  # brightness
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * factors[:, 1].view(n, 1, 1, 1) + mean).clamp(0, 1)  # contrast
    if x.shape[1] == 3:
        g = _gray(x)
        x = ((x - g) * factors[:, 2].view(n, 1, 1, 1) + g).clamp(0, 1)  # saturation
        x = torch.where((u[:, 3] < grayscale).view(n, 1, 1, 1), _gray(x).expand_as(x), x)
    return x


def instance_augment(x: torch.Tensor, rand: Rand, *, crop_scale: float = 0.2, jitter: float = 0.4,
                     grayscale: float = 0.2, flip: float = 0.5) -> torch.Tensor:
    """The full augmentation of Wu et al. (2018), without hue jitter: crop + flip, then colour."""
    return color_jitter(random_resized_crop(x, rand, (crop_scale, 1.0), flip=flip), rand, jitter, grayscale)
