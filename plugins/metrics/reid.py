"""Re-identification of generated images (Esser et al. 2019, Table 2 "reID mAP"): a person
re-identification model (``torchreid``, OSNet-x1.0 trained on Market-1501) embeds every generated
image G(appearance of x_i, pose of x_j) as a query, searched in the real gallery; the query's
identity is that of x_i, which supplied the appearance. mAP % and rank-1 % follow the Market-1501
protocol (``torchreid.metrics.evaluate_rank``): x_i and x_j come from the ``query`` split where the
dataset has one (Market-1501, DeepFashion) and the gallery is its ``gallery`` split; gallery images
of the query's identity taken by the same camera are ignored, and where the dataset has no camera
ids, the appearance image x_i itself is. "Reconstruction" scores do the same with decode(encode(x_i))
as the query, as in the paper.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from disentbench.contracts import MetricResult, MetricUnavailable
from disentbench.evaluation import to_float

from disentbench_plugins.metrics.pretrained import check_dataset, check_images, rgb, safe_load, weight_path

KEY_MAP = "map"
KEY_RANK1 = "rank1"
KEY_MAP_RECON = "map_reconstruction"
KEY_RANK1_RECON = "rank1_reconstruction"
KEY_N_QUERIES = "n_queries"
WEIGHTS = "osnet_market1501"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NOTE = ("reID model: torchreid OSNet-x1.0 trained on Market-1501, not the reID encoder Esser et al. used; "
        "compare methods with each other, not with the paper's numbers")


@dataclass
class ReIDConfig:
    split: str = "auto"  # where appearance and pose images come from; "auto": "query" if the dataset has it, else "test"
    gallery_split: str = "auto"  # "auto": the dataset's "gallery" split if it has one, else `split`
    max_queries: int = 0  # 0 = every pair of eval.n_pairs
    reconstruction: bool = True  # also score reconstructions (Esser et al.'s "Reconstruction" column)
    height: int = 256  # OSNet's Market-1501 input size
    width: int = 128
    batch_size: int = 64
    datasets: tuple[str, ...] = ("market1501", "deepfashion")  # datasets of people; "*" = any


def import_torchreid():
    with warnings.catch_warnings():  # "Cython evaluation is unavailable": the Python fallback is exact
        warnings.simplefilter("ignore")
        import torchreid
    return torchreid


def build_osnet(state: dict[str, Any] | None) -> torch.nn.Module:
    """OSNet-x1.0 (torchreid, built without downloads) with the weights of a torchreid checkpoint
    (``{"state_dict": ...}`` or a bare state dict; the identity classifier is not needed), or random."""
    torchreid = import_torchreid()
    model = torchreid.models.build_model("osnet_x1_0", num_classes=1, pretrained=False)
    if state is not None:
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("classifier.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("classifier.")]
        if missing or unexpected:
            raise MetricUnavailable(
                f"the {WEIGHTS!r} file is not an osnet_x1_0 checkpoint (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]}); delete it and fetch it again (`disentbench weights fetch {WEIGHTS}`)")
    return model.eval().requires_grad_(False)


@torch.no_grad()
def embed(model: torch.nn.Module, images: np.ndarray, *, size: tuple[int, int], device: torch.device,
          batch_size: int = 64) -> torch.Tensor:
    """Features of uint8 (N, H, W, C) images, resized to ``size`` = (height, width) and normalised
    as torchreid's models expect."""
    model = model.to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    images = rgb(check_images(images, "reid embed"))
    out = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size], device)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        out.append(model((x - mean) / std).float().cpu())
    return torch.cat(out)


def scorable_queries(query_ids: np.ndarray, query_cams: np.ndarray, gallery_ids: np.ndarray,
                     gallery_cams: np.ndarray) -> np.ndarray:
    """Which queries the Market-1501 protocol scores: those with at least one gallery image of their
    identity from another camera (junk gallery entries, id < 0, do not count)."""
    q_ids, q_cams = np.asarray(query_ids)[:, None], np.asarray(query_cams)[:, None]
    g_ids, g_cams = np.asarray(gallery_ids)[None], np.asarray(gallery_cams)[None]
    return ((g_ids == q_ids) & (g_cams != q_cams) & (g_ids >= 0)).any(1)


def retrieval_scores(query: torch.Tensor, query_ids: np.ndarray, query_cams: np.ndarray,
                     gallery: torch.Tensor, gallery_ids: np.ndarray, gallery_cams: np.ndarray) -> tuple[float, float]:
    """(mAP %, rank-1 %) of the query features against the gallery features (Euclidean distance),
    by torchreid's Market-1501 evaluation: gallery images of the query's identity from the query's
    camera are ignored, so are junk gallery entries (id < 0), and a query with no other image of
    its identity in the gallery is not scored."""
    torchreid = import_torchreid()
    query_ids, query_cams = np.asarray(query_ids), np.asarray(query_cams)
    gallery_ids, gallery_cams = np.asarray(gallery_ids), np.asarray(gallery_cams)
    if not scorable_queries(query_ids, query_cams, gallery_ids, gallery_cams).any():
        raise MetricUnavailable("no query identity appears in the gallery from another camera (or as another "
                                "image), so retrieval cannot be scored")
    keep = gallery_ids >= 0  # junk
    distmat = torchreid.metrics.compute_distance_matrix(query, gallery[torch.from_numpy(keep)], metric="euclidean").numpy()
    # max_rank=1: torchreid cuts each query's ranking to max_rank after removing that query's same-camera
    # entries, so any longer cut fails (ragged rows) on a gallery of about max_rank images; only rank-1 is used
    cmc, mean_ap = torchreid.metrics.evaluate_rank(
        distmat, query_ids, gallery_ids[keep], query_cams, gallery_cams[keep], max_rank=1, use_cython=False,
    )
    return 100.0 * float(mean_ap), 100.0 * float(cmc[0])


class ReIDMAP:
    """Re-identification mAP and rank-1 of generated images (higher is better)."""

    Config = ReIDConfig

    def __init__(self, config: ReIDConfig | None = None) -> None:
        self.config = config or ReIDConfig()

    def applies(self, ctx: Any) -> None:
        check_dataset(ctx, "reid_map", self.config.datasets,
                      "scores person identity with a model trained on Market-1501")

    def compute(self, ctx: Any) -> MetricResult:
        c = self.config
        split_name = c.split if c.split != "auto" else ("query" if "query" in ctx.data.splits else "test")
        split = ctx.split(split_name)
        gallery_name = c.gallery_split
        if gallery_name == "auto":
            gallery_name = "gallery" if "gallery" in ctx.data.splits else split_name
        gallery = ctx.split(gallery_name)
        pairs = ctx.transfer_pairs(split_name, need_targets=False)
        n = min(len(pairs.class_idx), c.max_queries or len(pairs.class_idx))
        source = pairs.class_idx[:n]
        generated = ctx.transferred(split_name, need_targets=False)[:n]

        if "camera" in split.extras and "camera" in gallery.extras:
            q_cams, g_cams = np.asarray(split.extras["camera"])[source], np.asarray(gallery.extras["camera"])
        elif gallery_name == split_name:  # the gallery holds the appearance image itself: ignore exactly it
            q_cams, g_cams = source, np.arange(len(gallery))
        else:
            q_cams, g_cams = np.full(n, -1), np.zeros(len(gallery), dtype=np.int64)
        q_ids, g_ids = split.classes[source], gallery.classes

        model = build_osnet(safe_load(weight_path(ctx, WEIGHTS)))
        size = (c.height, c.width)
        g_feat = embed(model, gallery.images, size=size, device=ctx.device, batch_size=c.batch_size)
        values: dict[str, float] = {}
        q_feat = embed(model, generated, size=size, device=ctx.device, batch_size=c.batch_size)
        values[KEY_MAP], values[KEY_RANK1] = retrieval_scores(q_feat, q_ids, q_cams, g_feat, g_ids, g_cams)
        if c.reconstruction:
            recon = ctx.reconstructed_at(split_name, source)
            r_feat = embed(model, recon, size=size, device=ctx.device, batch_size=c.batch_size)
            values[KEY_MAP_RECON], values[KEY_RANK1_RECON] = retrieval_scores(r_feat, q_ids, q_cams, g_feat, g_ids, g_cams)
        scored = int(scorable_queries(q_ids, q_cams, g_ids, g_cams).sum())
        values[KEY_N_QUERIES] = float(scored)
        notes = [NOTE]
        if scored < n:
            notes.append(f"{n - scored} of {n} queries have no other image of their identity in the gallery "
                         "(Market-1501 protocol) and are not scored")
        return MetricResult(values, "; ".join(notes))
