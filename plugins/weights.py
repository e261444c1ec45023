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
    WeightSpec(
        name="rotnet_alexnet",
        description="AlexNet trained on ImageNet without labels by predicting image rotations (RotNet, Gidaris "
                    "et al., ICLR 2018); its conv4 features retrieve idpose's pose references",
        filename="ImageNet_RotNet_AlexNet_pytorch.pth",
        used_by=("idpose (pose-reference retrieval)",),
        instructions="the authors publish it only behind a MEGA link, with no checksum: download "
                     "'ImageNet_RotNet_AlexNet_pytorch' from https://mega.nz/#!n81AnC6L!xTbo_D3xd7QOpOSG1UFSChmDr8mbcuWbVjhQMaC4yoE "
                     "(linked from https://github.com/gidariss/FeatureLearningRotNet, section 'Download the already "
                     "trained RotNet model'); if it is an archive, take the network checkpoint inside (a torch file "
                     "holding {'network': state_dict}, e.g. model_net_epoch50) and save it under this name",
    ),
]


@hookimpl
def register_weights(register):
    for spec in WEIGHTS:
        register(spec)
