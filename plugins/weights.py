"""Pretrained weight files the built-in methods and metrics use. Checksums: torchvision names its
files ``<arch>-<first 8 hex digits of the SHA-256>.pth``, and checks that prefix; we check it too
(torch-fidelity and OpenMMLab name their files the same way). A file with no published checksum
(the torchreid model) is checked by loading it with ``weights_only=True`` into its architecture."""
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
        name="alexnet",
        description="AlexNet ImageNet classifier (torchvision), the backbone of LPIPS v0.1 (its linear "
                    "heads ship inside the lpips package)",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256="7be5be79",
        filename="alexnet-owt-7be5be79.pth",
        used_by=("lpips_transfer",),
    ),
    WeightSpec(
        name="inception_fid",
        description="Inception-v3 converted from TensorFlow's 2015-12-05 graph, the FID feature extractor "
                    "of torch-fidelity (same weights as pytorch-fid's pt_inception-2015-12-05)",
        url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
        sha256="6726825d",
        filename="weights-inception-2015-12-05-6726825d.pth",
        used_by=("fid",),
    ),
    WeightSpec(
        name="osnet_market1501",
        description="OSNet-x1.0 person re-identification model trained on Market-1501 (torchreid model zoo, "
                    "rank-1 94.2%, mAP 82.6%)",
        url="https://drive.google.com/uc?export=download&id=1vduhq5DpN2q1g4fYEZfPI17MJeh9qyrA",
        filename="osnet_x1_0_market_256x128_amsgrad_ep150_stp60_lr0.0015_b64_fb10_softmax_labelsmooth_flip.pth",
        used_by=("reid_map",),
        instructions="torchreid publishes no checksum for this file; it is checked by loading it safely into "
                     "osnet_x1_0. If the Google Drive link answers with a web page, run "
                     "`gdown 1vduhq5DpN2q1g4fYEZfPI17MJeh9qyrA` and move the file there, or download it from "
                     "https://kaiyangzhou.github.io/deep-person-reid/MODEL_ZOO (same-domain ReID, market1501, "
                     "osnet_x1_0)",
    ),
    WeightSpec(
        name="hrnet_w32_coco",
        description="HRNet-W32 top-down human keypoint detector, COCO 256x192 (mmpose model zoo), the mmpose "
                    "backend of keypoint_error",
        url="https://download.openmmlab.com/mmpose/top_down/hrnet/hrnet_w32_coco_256x192-c78dce93_20200708.pth",
        sha256="c78dce93",  # OpenMMLab names published files <name>-<first 8 hex digits of the SHA-256>
        filename="hrnet_w32_coco_256x192-c78dce93_20200708.pth",
        used_by=("keypoint_error (backend mmpose)",),
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
