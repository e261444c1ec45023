"""Reconstruction losses shared by all methods: L1 (offline) and the VGG perceptual loss that
LORD uses (Hoshen & Malik 2019: pixel L1 plus L1 between VGG16 features at 5 layers)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from disentbench.contracts import Unavailable
from disentbench.weights import WeightStore, passed_store

VGG_LAYERS = (2, 7, 12, 21, 30)  # relu1_2, relu2_2, relu3_3, relu4_3, maxpool5 in vgg16.features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualLoss(nn.Module):
    """Per-sample mean |x − y| plus the mean |φ_l(x) − φ_l(y)| over VGG16 feature layers l.

    ``imagenet_normalize``: feed VGG ImageNet-normalised inputs (what torchvision's weights expect),
    or the [0, 1] images as they are (what the official lord-pytorch code does).
    Needs torchvision and the registered ``vgg16`` ImageNet weights; raises
    :class:`disentbench.contracts.Unavailable` naming the file and how to fetch it when absent."""

    def __init__(self, layers: tuple[int, ...] = VGG_LAYERS, weights: str = "vgg16",
                 store: WeightStore | None = None, imagenet_normalize: bool = True) -> None:
        super().__init__()
        try:
            from torchvision.models import vgg16
        except Exception as exc:  # torchvision absent or incompatible with this torch
            raise Unavailable(
                f"the perceptual loss needs torchvision ({exc}); install it with "
                "`pip install torch==2.14.1 torchvision==0.29.1`, or set the method's recon_loss=l1"
            ) from None
        state = passed_store(store, weights, "the perceptual loss").load_state_dict(weights)
        net = vgg16()
        net.load_state_dict(state)
        self.layers = tuple(layers)
        self.imagenet_normalize = imagenet_normalize
        self.features = net.features[: max(self.layers) + 1].eval()
        for module in self.features.modules():  # frozen, and kept out of the method's state_dict
            for name, param in list(module.named_parameters(recurse=False)):
                delattr(module, name)
                module.register_buffer(name, param.detach(), persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h = (x - self.mean) / self.std if self.imagenet_normalize else x
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.layers:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = (x - y).abs().flatten(1).mean(1)
        for fx, fy in zip(self._features(x), self._features(y)):
            loss = loss + (fx - fy).abs().flatten(1).mean(1)
        return loss.mean()

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.features.eval()  # frozen feature extractor
        return self


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).abs().flatten(1).mean(1).mean()


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).pow(2).flatten(1).mean(1).mean()


def reconstruction_loss(kind: str, store: WeightStore | None = None, *, imagenet_normalize: bool = True
                        ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``"l1"``, ``"mse"`` or ``"perceptual"`` (VGG16; needs its pretrained weights from ``store``,
    a method's ``info.weights``; its inputs ImageNet-normalised unless ``imagenet_normalize=False``)."""
    if kind == "l1":
        return l1
    if kind == "mse":
        return mse
    if kind == "perceptual":
        return PerceptualLoss(store=store, imagenet_normalize=imagenet_normalize)
    raise ValueError(f"unknown reconstruction loss {kind!r}; use l1, mse or perceptual")
