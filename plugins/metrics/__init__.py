"""Built-in metric plugins. Specs are cheap; each metric module is imported only when used.

Keys and their directions are declared here, once; the harness rejects a metric that returns an
undeclared key, and the contract tests run every registered metric."""
from __future__ import annotations

from disentbench import MetricSpec, hookimpl

LORD_PAPER = "Gabbay & Hoshen, ICLR 2020"
XIAO_PAPER = "Xiao, Liu & Lee 2019, Tables 1-2"
ESSER_PAPER = "Esser, Haux & Ommer, ICCV 2019, Table 2"

METRICS: list[MetricSpec] = [
    MetricSpec(
        name="transfer_error",
        target="disentbench_plugins.metrics.transfer:TransferError",
        description="Ground-truth content transfer on held-out classes (LORD Table 1 protocol): pixel MSE "
                    "and SSIM between G(class of x_i, content of x_j) and the true image",
        keys={"mse": "min", "ssim": "max", "n_pairs": "info"},
        requires=("factors",),
        paper=LORD_PAPER,
    ),
    MetricSpec(
        name="leakage",
        target="disentbench_plugins.metrics.leakage:Leakage",
        description="MLP accuracy predicting the class from content codes and the content factors from "
                    "class codes (LORD Table 2), scored on held-out values of the other factor where the dataset "
                    "has factors; beside each: chance (1/labels), majority-class share and the floor (a perfectly "
                    "disentangled reference code on the same split)",
        keys={"class_from_content": "min", "chance_class": "info", "majority_class": "info",
              "floor_class_from_content": "info",
              "content_from_class": "min", "chance_content": "info", "majority_content": "info",
              "floor_content_from_class": "info", "n_codes": "info"},
        requires=("codes",),
        paper=LORD_PAPER,
    ),
    MetricSpec(
        name="reconstruction",
        target="disentbench_plugins.metrics.reconstruction:Reconstruction",
        description="Pixel MSE of decode(encode(x)) on held-out images",
        keys={"mse": "min"},
        requires=("codes",),
    ),
    MetricSpec(
        name="lpips_transfer",
        target="disentbench_plugins.metrics.lpips_transfer:LPIPSTransfer",
        description="LPIPS (AlexNet, v0.1) between content transfers and their real targets: ground-truth "
                    "factors (LORD Table 1) or nearest neighbour in landmarks/keypoints (LORD's CelebA protocol)",
        keys={"lpips": "min", "n_pairs": "info"},
        requires=("package:lpips", "weights:alexnet"),
        paper=f"{LORD_PAPER}; {XIAO_PAPER}",
    ),
    MetricSpec(
        name="fid",
        target="disentbench_plugins.metrics.fid:FID",
        description="FID (torch-fidelity, Inception pool3) of the generated transfers against their real "
                    "targets, with the number of images used",
        keys={"fid": "min", "n_images": "info"},
        requires=("package:torch_fidelity", "weights:inception_fid"),
        paper=XIAO_PAPER,
    ),
    MetricSpec(
        name="reid_map",
        target="disentbench_plugins.metrics.reid:ReIDMAP",
        description="Person re-identification (torchreid OSNet, Market-1501) of generated images as queries "
                    "against the real gallery, identity = the appearance image's: mAP % and rank-1 %; "
                    "datasets of people only",
        keys={"map": "max", "rank1": "max", "map_reconstruction": "max", "rank1_reconstruction": "max",
              "n_queries": "info"},
        requires=("package:torchreid", "weights:osnet_market1501"),
        paper=ESSER_PAPER,
    ),
    MetricSpec(
        name="keypoint_error",
        target="disentbench_plugins.metrics.keypoints:KeypointError",
        description="Distance between body keypoints of the pose input and of the generated image, mean ± std "
                    "in % of image width (rePose), keypoints missing in the generated image counted as the image "
                    "diagonal, with the share detected; backend mmpose (HRNet, weights hrnet_w32_coco) or mediapipe "
                    "(bundled BlazePose); datasets of people only",
        keys={"mean": "min", "std": "info", "mean_reconstruction": "min", "std_reconstruction": "info",
              "n_images": "info", "detected": "info", "detected_reconstruction": "info"},
        paper=ESSER_PAPER,
    ),
    MetricSpec(
        name="id_preservation",
        target="disentbench_plugins.metrics.preservation:IdPreservation",
        description="Mean sigmoid affinity between generated and identity images under a triplet-loss identity "
                    "embedding trained here on the training identities for a budget of steps (cached per dataset), "
                    "given only if its verification AUC on real held-out images passes a threshold",
        keys={"score": "max", "real_same": "info", "real_different": "info", "n_pairs": "info",
              "verification_auc": "info"},
        paper=XIAO_PAPER,
    ),
    MetricSpec(
        name="pose_preservation",
        target="disentbench_plugins.metrics.preservation:PosePreservation",
        description="Probability a pose classifier trained here on the pose factors for a budget of steps (cached "
                    "per dataset) gives generated images for their pose image's pose; accuracy, and its accuracy "
                    "on real held-out images against chance, which must pass a threshold",
        keys={"score": "max", "accuracy": "max", "real_accuracy": "info", "chance_accuracy": "info",
              "n_pairs": "info"},
        requires=("factors",),
        paper=XIAO_PAPER,
    ),
    MetricSpec(
        name="lpips_random",
        target="disentbench_plugins.metrics.lpips_random:LPIPSRandom",
        description="LPIPS with a seeded random AlexNet backbone and the lpips package's real linear heads, on the "
                    "pairs of lpips_transfer: its offline stand-in when the ImageNet AlexNet weights are missing "
                    "(compare methods with each other, not with published LPIPS)",
        keys={"lpips": "min", "n_pairs": "info"},
        requires=("package:lpips",),
    ),
    MetricSpec(
        name="swap",
        target="disentbench_plugins.metrics.swap:Swap",
        description="Content transfers read by frozen judges (small classifiers trained here on real images, "
                    "MSD-Benchmark's approach): content factors of the content image, class of the class image, "
                    "copies of the class image's content; with chance, the real target (judges' ceiling) and the "
                    "method's reconstructions (its image-quality ceiling) read by the same judges",
        keys={"content_accuracy": "max", "class_accuracy": "max", "copy_rate": "min",
              "chance_content": "info", "chance_class": "info", "chance_copy": "info",
              "real_content_accuracy": "info", "real_class_accuracy": "info", "real_copy_rate": "info",
              "recon_content_accuracy": "info", "recon_class_accuracy": "info", "recon_copy_rate": "info",
              "judge_content": "info", "judge_class": "info", "n_pairs": "info", "n_copy_pairs": "info"},
        requires=("factors",),
        paper="MSD-Benchmark (NeurIPS 2025) approach; LORD's transfer claim",
    ),
    MetricSpec(
        name="landmark_regression",
        target="disentbench_plugins.metrics.landmarks:LandmarkRegression",
        description="Error (pixels) of facial landmarks regressed linearly from class codes, on held-out codes "
                    "(LORD Table 2, R(y) → c; higher = less content in the class codes), with the error of "
                    "predicting the mean",
        keys={"error": "max", "chance_error": "info", "n_images": "info"},
        requires=("codes", "extra:landmarks"),
        paper=LORD_PAPER,
    ),
]


@hookimpl
def register_metrics(register):
    for spec in METRICS:
        register(spec)
