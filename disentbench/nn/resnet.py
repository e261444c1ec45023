"""A ResNet-18 (He et al. 2016) with a configurable width, written here so that it needs no
torchvision (the CPU-only install has none) and exposes the feature maps of all its stages.

For the small images of disentanglement benchmarks (32-128 px) the stem is CIFAR-style, a 3×3
stride-1 convolution without max-pooling, as in the CIFAR experiments of He et al. and of Wu et al.
(2018). ``width=64`` is the standard network; smaller widths make cheap variants for quick runs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity (or 1×1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class ResNet18(nn.Module):
    """Image → 8·width pooled features; :meth:`features` returns the 5 feature maps (stem and the
    four stages), the layers a feature-matching loss compares."""

    def __init__(self, in_channels: int = 3, width: int = 64, blocks: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        stages, c = [], width
        for k, n in enumerate(blocks):
            c_out = width * 2**k
            layers = [BasicBlock(c, c_out, 1 if k == 0 else 2)] + [BasicBlock(c_out, c_out) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c = c_out
        self.stages = nn.ModuleList(stages)
        self.out_dim = c

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = [self.stem(x)]
        for stage in self.stages:
            out.append(stage(out[-1]))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1].mean(dim=(2, 3))
