"""Pretrained weight files the built-in methods and metrics use. Checksums: torchvision names its
files ``<arch>-<first 8 hex digits of the SHA-256>.pth``, and checks that prefix; we check it too."""
from __future__ import annotations

from disentbench import WeightSpec, hookimpl

WEIGHTS: list[WeightSpec] = [
    WeightSpec(
        name="vgg16",
        description="VGG16 ImageNet classifier (torchvision), features for the perceptual loss",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256="397923af",
        filename="vgg16-397923af.pth",
        used_by=("perceptual loss (lord, baselines with recon_loss=perceptual)",),
    ),
]


@hookimpl
def register_weights(register):
    for spec in WEIGHTS:
        register(spec)
