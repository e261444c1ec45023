"""Pix2PixHD-style building blocks (Wang et al., CVPR 2018): residual blocks, a PatchGAN
discriminator and its multi-scale wrapper. Methods that follow Pix2PixHD's generator and 2-scale
discriminator (Xiao et al. 2019, "Identity from here, Pose from there") share them from here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    """x + [conv3×3 – InstanceNorm – ReLU – conv3×3 – InstanceNorm](x), reflection padded."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PatchDiscriminator(nn.Module):
    """Image (or channel-stacked image pair) → a map of real/fake logits, one per patch.

    ``n_layers`` stride-2 4×4 convolutions (the first without normalisation), one stride-1 4×4
    convolution, then a 4×4 convolution to one channel; LeakyReLU(0.2), InstanceNorm."""

    def __init__(self, in_channels: int = 3, channels: int = 64, n_layers: int = 3, max_channels: int = 512) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for _ in range(1, n_layers):
            c_out = min(c * 2, max_channels)
            layers += [nn.Conv2d(c, c_out, 4, 2, 1), nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(0.2)]
            c = c_out
        c_out = min(c * 2, max_channels)
        layers += [nn.Conv2d(c, c_out, 3, 1, 1), nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(0.2)]
        self.trunk = nn.Sequential(*layers)
        self.out_channels = c_out
        self.head = nn.Conv2d(c_out, 1, 3, 1, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's feature map (what an auxiliary classifier head reads)."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class MultiScaleDiscriminator(nn.Module):
    """``n_scales`` PatchDiscriminators, the k-th seeing the input average-pooled k times by 2:
    realism judged both locally (fine scale) and globally (coarse scale)."""

    def __init__(self, n_scales: int = 2, **kwargs) -> None:
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(**kwargs) for _ in range(n_scales))

    @staticmethod
    def downsample(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """One logit map per scale, finest first; with ``return_features`` also the finest
        scale's trunk features (for an auxiliary classifier head on the discriminator)."""
        out, features = [], None
        for k, disc in enumerate(self.scales):
            if k:
                x = self.downsample(x)
            h = disc.features(x)
            if k == 0:
                features = h
            out.append(disc.head(h))
        return (out, features) if return_features else out


def lsgan_loss(logits: list[torch.Tensor] | torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Pix2PixHD's choice), averaged over patches and summed over scales."""
    if isinstance(logits, torch.Tensor):
        logits = [logits]
    target = 1.0 if real else 0.0
    return sum((z - target).pow(2).mean() for z in logits)
