"""Pose keypoint error of generated images (Esser et al. 2019, Table 2 "rePose"): a human keypoint
detector runs on the pose input x_j and on the generated G(appearance of x_i, pose of x_j); the
error of an image is the mean Euclidean distance over the keypoints found in x_j, in % of the
image width; reported as mean ± std over images. A keypoint the detector does not find in the
generated image counts as the largest error there is (the image diagonal), so an output that hides
its person scores worst instead of being left out; ``detected`` is the share of keypoints found.
Pose inputs in which no person is found (real images) are left out and counted in the notes.
"Reconstruction" does the same for x_j and decode(encode(x_j)).

Esser et al. used OpenPose. Backends here share one interface, :class:`KeypointDetector`:
``mmpose`` (HRNet-W32 on COCO, the registered ``hrnet_w32_coco`` weights; mmpose needs mmcv, an
optional install) and ``mediapipe`` (BlazePose, whose models ship inside ``mediapipe==0.10.21``, so it
runs offline). Both report the 17 COCO body keypoints, so their errors measure the same joints.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from disentbench.contracts import MetricResult, MetricUnavailable

from disentbench_plugins.metrics.pretrained import check_dataset, check_images, rgb, weight_path

KEY_MEAN = "mean"
KEY_STD = "std"
KEY_MEAN_RECON = "mean_reconstruction"
KEY_STD_RECON = "std_reconstruction"
KEY_N_IMAGES = "n_images"
KEY_DETECTED = "detected"
KEY_DETECTED_RECON = "detected_reconstruction"
COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                  "left_knee", "right_knee", "left_ankle", "right_ankle")
# BlazePose's 33 landmarks → the 17 COCO keypoints, in COCO order
MEDIAPIPE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


class KeypointDetector(Protocol):
    """Finds keypoints: uint8 (N, H, W, 3) images → float (N, K, 2) pixel coordinates (x, y), NaN
    where a keypoint was not found with enough confidence."""

    note: str  # how the detector differs from the paper's (shown in the leaderboard)

    def detect(self, images: np.ndarray) -> np.ndarray: ...


def _upscale(images: np.ndarray, min_size: int) -> tuple[np.ndarray, int]:
    """Enlarge small images by an integer factor (bicubic) so detectors see people at the size they
    were trained on; returns the images and the factor."""
    from PIL import Image

    h, w = images.shape[1:3]
    factor = max(1, int(np.ceil(min_size / min(h, w))))
    if factor == 1:
        return images, 1
    big = np.stack([np.asarray(Image.fromarray(im).resize((w * factor, h * factor), Image.BICUBIC)) for im in images])
    return big, factor


class MediaPipeDetector:
    """BlazePose (``mediapipe.solutions.pose``, model_complexity=1, static images)."""

    note = ("keypoints by mediapipe BlazePose (17 COCO joints), not OpenPose as in Esser et al.: "
            "compare methods with each other, not with the paper's numbers")

    def __init__(self, min_score: float = 0.5, min_size: int = 256, progress: bool = False) -> None:
        self.min_score, self.min_size, self.progress = min_score, min_size, progress

    @staticmethod
    def missing() -> str | None:
        if importlib.util.find_spec("mediapipe") is None:
            return "mediapipe is not installed (`pip install mediapipe==0.10.21`; see the README)"
        try:
            from mediapipe.python.solutions import pose  # noqa: F401
        except ImportError as exc:
            return (f"mediapipe is installed but has no mediapipe.python.solutions.pose ({exc}); "
                    "BlazePose's bundled models need mediapipe==0.10.21")
        return None

    def detect(self, images: np.ndarray) -> np.ndarray:
        from mediapipe.python.solutions import pose
        from tqdm.auto import tqdm

        images, factor = _upscale(rgb(check_images(images, f"{type(self).__name__}.detect")), self.min_size)
        h, w = images.shape[1:3]
        out = np.full((len(images), len(MEDIAPIPE_TO_COCO), 2), np.nan)
        with pose.Pose(static_image_mode=True, model_complexity=1) as model:
            for k, image in enumerate(tqdm(images, desc="keypoints (mediapipe)", disable=not self.progress, leave=False)):
                found = model.process(np.ascontiguousarray(image)).pose_landmarks
                if found is None:
                    continue
                marks = [found.landmark[m] for m in MEDIAPIPE_TO_COCO]
                xy = np.array([[m.x * w, m.y * h] for m in marks]) / factor
                seen = np.array([m.visibility >= self.min_score for m in marks])
                out[k, seen] = xy[seen]
        return out


class MMPoseDetector:
    """HRNet-W32 top-down (mmpose 1.x) with the whole image as the person box (the datasets hold
    person crops)."""

    note = ("keypoints by mmpose HRNet-W32 (COCO), not OpenPose as in Esser et al.: compare methods "
            "with each other, not with the paper's numbers")
    CONFIG = "body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w32_8xb64-210e_coco-256x192.py"
    WEIGHTS = "hrnet_w32_coco"

    def __init__(self, checkpoint: str, device: str = "cpu", min_score: float = 0.3, min_size: int = 256,
                 progress: bool = False) -> None:
        from pathlib import Path

        import mmpose
        from mmpose.apis import init_model

        config = Path(mmpose.__file__).parent / ".mim" / "configs" / self.CONFIG
        if not config.is_file():
            raise MetricUnavailable(f"mmpose's config {self.CONFIG} is not at {config}; reinstall mmpose>=1.0 from pip")
        self.model = init_model(str(config), checkpoint, device=device)
        self.min_score, self.min_size, self.progress = min_score, min_size, progress

    @staticmethod
    def missing() -> str | None:
        for name in ("mmpose", "mmcv", "mmengine"):
            if importlib.util.find_spec(name) is None:
                return f"{name} is not installed (`pip install 'disentbench[pose]'`; mmcv compiles for over 20 minutes)"
        return None

    def detect(self, images: np.ndarray) -> np.ndarray:
        from mmpose.apis import inference_topdown
        from tqdm.auto import tqdm

        images, factor = _upscale(rgb(check_images(images, f"{type(self).__name__}.detect")), self.min_size)
        h, w = images.shape[1:3]
        box = np.array([[0, 0, w, h]], dtype=np.float32)
        out = np.full((len(images), len(COCO_KEYPOINTS), 2), np.nan)
        for k, image in enumerate(tqdm(images, desc="keypoints (mmpose)", disable=not self.progress, leave=False)):
            result = inference_topdown(self.model, np.ascontiguousarray(image[..., ::-1]), box, bbox_format="xyxy")
            if not result:
                continue
            xy = np.asarray(result[0].pred_instances.keypoints[0], dtype=np.float64) / factor
            seen = np.asarray(result[0].pred_instances.keypoint_scores[0]) >= self.min_score
            out[k, seen] = xy[seen]
        return out


def keypoint_distances(a: np.ndarray, b: np.ndarray, width: int, *,
                       undetected: float | None = None) -> tuple[np.ndarray, float]:
    """Per image, the mean distance between the keypoints of ``a`` and ``b`` ((N, K, 2), NaN = not
    found), in % of ``width``, over the keypoints found in ``a``. A keypoint found in ``a`` but not
    in ``b`` counts as ``undetected`` pixels (the metric passes the image diagonal, the largest
    error there is); with ``undetected=None`` it is left out, and an image without a shared keypoint
    is NaN. Also the share of the keypoints found in ``a`` that were found in ``b``."""
    found_a = np.isfinite(a).all(-1)
    both = found_a & np.isfinite(b).all(-1)
    dist = np.linalg.norm(np.nan_to_num(a) - np.nan_to_num(b), axis=-1)
    detected = float(both.sum() / found_a.sum()) if found_a.any() else 0.0
    scored = both
    if undetected is not None:  # no survivorship: a keypoint the output lost is the worst error, not skipped
        dist, scored = np.where(both, dist, float(undetected)), found_a
    count = scored.sum(1)
    with np.errstate(invalid="ignore"):
        per_image = np.where(count > 0, (dist * scored).sum(1) / np.maximum(count, 1), np.nan) * 100.0 / width
    return per_image, detected


@dataclass
class KeypointErrorConfig:
    split: str = "test"
    backend: str = "auto"  # "auto" (mmpose where installed with its weights, else mediapipe), "mmpose", "mediapipe"
    max_pairs: int = 500  # detection costs about 0.1-0.3 s per image on a CPU
    min_score: float = 0.5  # keypoint confidence (visibility) below which a keypoint counts as not found
    min_size: int = 256  # images are enlarged to at least this many pixels before detection
    reconstruction: bool = True
    datasets: tuple[str, ...] = ("market1501", "deepfashion")  # datasets of people; "*" = any


def _make_mmpose(ctx: Any, c: KeypointErrorConfig) -> KeypointDetector:
    path = weight_path(ctx, MMPoseDetector.WEIGHTS)
    return MMPoseDetector(str(path), device=str(ctx.device), min_score=c.min_score, min_size=c.min_size,
                          progress=ctx.progress)


def _make_mediapipe(ctx: Any, c: KeypointErrorConfig) -> KeypointDetector:
    return MediaPipeDetector(min_score=c.min_score, min_size=c.min_size, progress=ctx.progress)


# name → (what is missing or None, factory); tests and plugins may add their own detectors here
BACKENDS: dict[str, tuple[Callable[[], str | None], Callable[[Any, KeypointErrorConfig], KeypointDetector]]] = {
    "mmpose": (MMPoseDetector.missing, _make_mmpose),
    "mediapipe": (MediaPipeDetector.missing, _make_mediapipe),
}


def make_detector(ctx: Any, c: KeypointErrorConfig) -> KeypointDetector:
    """The configured backend, or for "auto" mmpose (if installed and its weights are here), else
    mediapipe; raises :class:`MetricUnavailable` saying what each would need."""
    if c.backend != "auto":
        if c.backend not in BACKENDS:
            raise ValueError(f"keypoint_error.backend {c.backend!r} is not one of auto, {', '.join(BACKENDS)}")
        missing, factory = BACKENDS[c.backend]
        reason = missing()
        if reason:
            raise MetricUnavailable(f"keypoint backend {c.backend!r}: {reason}")
        return factory(ctx, c)
    reasons = []
    for name in ("mmpose", "mediapipe"):
        missing, factory = BACKENDS[name]
        reason = missing()
        if reason is None:
            try:
                return factory(ctx, c)
            except MetricUnavailable as exc:
                reason = str(exc)
            except Exception as exc:  # noqa: BLE001  (weights missing, a broken install: try the next one)
                reason = f"{type(exc).__name__}: {exc}"
        reasons.append(f"{name}: {reason}")
    raise MetricUnavailable("no keypoint detector can run here — " + "; ".join(reasons))


class KeypointError:
    """Distance between the keypoints of the pose input and of the generated image (lower is better)."""

    Config = KeypointErrorConfig

    def __init__(self, config: KeypointErrorConfig | None = None) -> None:
        self.config = config or KeypointErrorConfig()

    def applies(self, ctx: Any) -> None:
        check_dataset(ctx, "keypoint_error", self.config.datasets, "detects human body keypoints")

    def compute(self, ctx: Any) -> MetricResult:
        c = self.config
        detector = make_detector(ctx, c)
        split = ctx.split(c.split)
        pairs = ctx.transfer_pairs(c.split, need_targets=False)
        n = min(len(pairs.class_idx), c.max_pairs or len(pairs.class_idx))
        pose_idx = pairs.content_idx[:n]
        width = split.images.shape[2]
        pose_kp = detector.detect(split.images[pose_idx])
        usable = np.isfinite(pose_kp).all(-1).any(-1)  # pose inputs in which a person was found
        if not usable.any():
            raise MetricUnavailable(f"the keypoint detector found no person in the {n} pose inputs of split {c.split!r}")
        generated = ctx.transferred(c.split, need_targets=False)[:n]
        diagonal = float(np.hypot(*split.images.shape[1:3]))
        # every pose input with a person is scored: keypoints missing in the output count as the diagonal
        per_image, detected = keypoint_distances(pose_kp[usable], detector.detect(generated[usable]), width,
                                                 undetected=diagonal)
        values = {KEY_MEAN: float(per_image.mean()), KEY_STD: float(per_image.std()),
                  KEY_N_IMAGES: float(usable.sum()), KEY_DETECTED: detected}
        if c.reconstruction:
            recon = ctx.reconstructed_at(c.split, pose_idx[usable])
            per_recon, values[KEY_DETECTED_RECON] = keypoint_distances(pose_kp[usable], detector.detect(recon), width,
                                                                       undetected=diagonal)
            values[KEY_MEAN_RECON], values[KEY_STD_RECON] = float(per_recon.mean()), float(per_recon.std())
        notes = [detector.note,
                 f"a keypoint found in the pose input but not in the output counts as the largest error, the image "
                 f"diagonal ({100.0 * diagonal / width:.4g} % of the width); detected = the share found"]
        if usable.sum() < n:
            notes.append(f"{n - int(usable.sum())} of {n} pose inputs (real images) show no detectable person and "
                         "are not scored")
        return MetricResult(values, "; ".join(notes))
