"""What metrics get: an :class:`EvalContext` over a trained method and its dataset, with the
expensive shared pieces (codes, the LORD transfer pairs and their generated images) computed once
and reused by every metric of a run."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from disentbench.config import EvalOptions  # what metrics import it from
from disentbench.contracts import DataBundle, MetricUnavailable, Split


def to_float(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) → float (N, C, H, W) in [0, 1] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


class NonFiniteOutput(ValueError):
    """A method generated images with NaN or infinite pixels: evaluation fails, naming what made them
    (such images are never clamped into something that can be scored)."""


def finite_images(images: torch.Tensor, what: str = "generated images") -> torch.Tensor:
    """``images`` as float, detached; raises :class:`NonFiniteOutput` naming ``what`` produced them if
    any pixel is NaN or infinite."""
    x = images.detach().float()
    bad = ~torch.isfinite(x.flatten(1)).all(dim=1)
    if bool(bad.any()):
        raise NonFiniteOutput(
            f"{what}: {int(bad.sum())} of {len(x)} images have NaN or infinite pixels; the method's generator "
            "diverged (see its train_log.jsonl) — retrain it with a lower learning rate")
    return x


def to_uint8(images: torch.Tensor, what: str = "generated images") -> np.ndarray:
    """float (N, C, H, W) in [0, 1] → uint8 (N, H, W, C); raises :class:`NonFiniteOutput` naming
    ``what`` produced them if any pixel is NaN or infinite (finite values are clamped to [0, 1])."""
    x = finite_images(images, what)
    return x.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


class GeneratorCollapsed(RuntimeError):
    """The trained generator's outputs (nearly) ignore their inputs, or reconstruct no better than
    the training split's mean image: the run fails with the evidence instead of being scored."""


def generator_check(method: Any, data: DataBundle, options: EvalOptions, *, device: torch.device) -> dict[str, Any]:
    """Evidence that the trained generator is not collapsed, on a fixed seeded sample of
    ``options.check_images`` test images (the same for every method and seed):

    * ``spread_ratio``: the reconstructions' spread across inputs (per-pixel std over the sample,
      averaged over pixels) over the same for the real images; near 0 = one image for every input;
    * ``mse_ratio``: the reconstruction MSE over the MSE of predicting the training split's mean
      image for every input; at or above 1 = no better than that mean image.

    ``passed`` is False (with ``failures``) when a ratio crosses its threshold (``check_min_spread``,
    ``check_max_mse``; 0 turns a check off). Non-finite reconstructions raise :class:`NonFiniteOutput`."""
    test, train = data.splits.get("test", data.train), data.train
    n = min(options.check_images, len(test))
    rng = np.random.default_rng(zlib.crc32(b"generator-check"))
    idx = np.sort(rng.choice(len(test), n, replace=False))
    real = test.images[idx].astype(np.float64) / 255.0
    outs = []
    with torch.no_grad():
        for start in range(0, n, options.batch_size):
            x = to_float(test.images[idx[start:start + options.batch_size]], device)
            y = finite_images(method.reconstruct(x), "reconstruction for the generator check")
            outs.append(y.clamp(0, 1).permute(0, 2, 3, 1).double().cpu().numpy())
    out = np.concatenate(outs)
    mean_image = np.zeros(train.images.shape[1:], dtype=np.float64)
    for start in range(0, len(train), 4096):
        mean_image += train.images[start:start + 4096].sum(axis=0, dtype=np.float64)  # no float copy of the chunk
    mean_image /= 255.0 * len(train)
    output_spread, real_spread = float(out.std(axis=0).mean()), float(real.std(axis=0).mean())
    recon_mse, mean_mse = float(((out - real) ** 2).mean()), float(((real - mean_image) ** 2).mean())
    spread_ratio = output_spread / real_spread if n > 1 and real_spread > 0 else None
    mse_ratio = recon_mse / mean_mse if mean_mse > 0 else None
    failures = []
    if spread_ratio is not None and spread_ratio < options.check_min_spread:
        failures.append(f"its reconstructions of {n} different test images are (nearly) identical: they vary "
                        f"{output_spread:.4g} across inputs (mean per-pixel std) against {real_spread:.4g} for the real "
                        f"images, ratio {spread_ratio:.3g} < eval.check_min_spread = {options.check_min_spread:g}")
    if mse_ratio is not None and options.check_max_mse > 0 and mse_ratio > options.check_max_mse:
        failures.append(f"its reconstruction MSE {recon_mse:.4g} is {mse_ratio:.3g} × the MSE of predicting the "
                        f"training split's mean image ({mean_mse:.4g}) for every input, above eval.check_max_mse = "
                        f"{options.check_max_mse:g}")
    return {"split": "test" if "test" in data.splits else "train", "n_images": int(n),
            "output_spread": output_spread, "real_spread": real_spread, "spread_ratio": spread_ratio,
            "reconstruction_mse": recon_mse, "mean_image_mse": mean_mse, "mse_ratio": mse_ratio,
            "min_spread_ratio": options.check_min_spread, "max_mse_ratio": options.check_max_mse,
            "passed": not failures, "failures": failures}


# Per-image annotations (``Split.extras``) that place an image's content in a metric space, in
# order of preference: LORD's CelebA protocol finds content images by nearest neighbour in them.
# Each is an (N, K, D) or (N, D) float array; NaN marks a coordinate that is missing (undetected).
NEIGHBOUR_ANNOTATIONS = ("landmarks", "keypoints")


@dataclass
class TransferPairs:
    """Content-transfer pairs on one split: the class of ``class_idx[k]``, the content of
    ``content_idx[k]`` and the real image ``targets[k]`` showing that combination.

    ``protocol`` says how they were made: "ground-truth" (LORD Table 1: the target is looked up by
    class and content factors, in the same split, else in the training split, as SmallNorb-Poses
    needs); "nearest-neighbour:KEY" (LORD's CelebA protocol for datasets without factors: the
    target is a real image, the class image another image of its class, the content image the
    nearest neighbour of the target in annotation KEY among other classes); "random" (pairs of
    different classes without a target, for metrics that need none)."""

    class_idx: np.ndarray
    content_idx: np.ndarray
    targets: np.ndarray | None  # uint8 (n, H, W, C); None for "random"
    protocol: str = "ground-truth"


class EvalContext:
    """One trained method on one dataset; metrics read from it and it caches what they share."""

    def __init__(self, method: Any, data: DataBundle, *, device: torch.device, seed: int,
                 options: EvalOptions | None = None, cache_dir: Path | None = None,
                 weights: Any = None, progress: bool = False) -> None:
        self.method = method
        self.data = data
        self.device = device
        self.seed = seed
        self.options = options or EvalOptions()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.weights = weights
        self.progress = progress
        self._memo: dict[tuple, Any] = {}

    def rng(self, *salt: int | str) -> np.random.Generator:
        """A generator determined by the run's seed and ``salt`` (so metrics do not share streams)."""
        words = [self.seed] + [zlib.crc32(s.encode()) if isinstance(s, str) else int(s) for s in salt]
        return np.random.default_rng(words)

    def split(self, name: str = "test") -> Split:
        try:
            return self.data.splits[name]
        except KeyError:
            raise MetricUnavailable(f"dataset {self.data.name!r} has no split {name!r}") from None

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # -- running the method in batches ----------------------------------------------------
    @torch.no_grad()
    def map_batches(self, fn: Callable[..., Any], *arrays: np.ndarray) -> list[Any]:
        bs = self.options.batch_size
        out = []
        for start in range(0, len(arrays[0]), bs):
            out.append(fn(*[to_float(a[start : start + bs], self.device) for a in arrays]))
        return out

    def codes(self, split: str = "test", index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(class codes, content codes, image indices) for up to ``max_codes`` images of a split (a
        uniform sample), or for the images at ``index`` (e.g. :meth:`stratified_index`'s)."""

        def compute():
            s = self.split(split)
            idx = np.arange(len(s)) if index is None else np.asarray(index)
            if index is None and len(idx) > self.options.max_codes:
                idx = np.sort(self.rng("codes", split).choice(len(s), self.options.max_codes, replace=False))
            parts = self.map_batches(self.method.encode, s.images[idx])
            cls = torch.cat([p.class_code.flatten(1) for p in parts]).float().cpu().numpy()
            con = torch.cat([p.content_code.flatten(1) for p in parts]).float().cpu().numpy()
            return cls, con, idx

        key = ("codes", split, None if index is None else tuple(np.asarray(index).tolist()))
        return self.memo(key, compute)

    def stratified_index(self, split: str, *, cap: int, k: int) -> "CodeSample":
        """Which images of a split a class-stratified code sample takes (:func:`class_stratified_cap`,
        seeded by the run's seed): every image when the split fits in ``cap``."""
        s = self.split(split)
        return class_stratified_cap(s.classes, cap=cap, k=k, rng=self.rng("codes-stratified", split))

    def transfer_pairs(self, split: str = "test", n: int | None = None, *,
                       need_targets: bool = True) -> TransferPairs:
        """Pairs (i, j) of different classes with the real target image of class(i) in content(j):
        by ground-truth factors (LORD Table 1), else by nearest neighbour in a content annotation
        (:data:`NEIGHBOUR_ANNOTATIONS`, LORD's CelebA protocol). Where neither applies, raises
        :class:`MetricUnavailable`, or with ``need_targets=False`` returns random pairs of
        different classes without targets (for metrics that compare no target)."""
        n = n or self.options.n_pairs
        try:
            return self.memo(("pairs", split, n), lambda: self._target_pairs(split, n))
        except MetricUnavailable:
            if need_targets:
                raise
            return self.memo(("pairs-random", split, n), lambda: self._random_pairs(split, n))

    def neighbour_annotation(self, split: str = "test") -> str | None:
        """The first of :data:`NEIGHBOUR_ANNOTATIONS` the split carries, or None."""
        extras = self.split(split).extras
        return next((key for key in NEIGHBOUR_ANNOTATIONS if key in extras), None)

    def _random_pairs(self, split: str, n: int) -> TransferPairs:
        s = self.split(split)
        if len(np.unique(s.classes)) < 2:
            raise MetricUnavailable(f"split {split!r} of dataset {self.data.name!r} has fewer than 2 classes")
        rng = self.rng("pairs-random", split)
        ci, cj = [], []
        while sum(len(a) for a in ci) < n:
            i = rng.integers(0, len(s), size=2 * n)
            j = rng.integers(0, len(s), size=2 * n)
            keep = s.classes[i] != s.classes[j]
            ci.append(i[keep]); cj.append(j[keep])
        return TransferPairs(np.concatenate(ci)[:n], np.concatenate(cj)[:n], None, "random")

    def _neighbour_pairs(self, split: str, key: str, n: int) -> TransferPairs:
        s = self.split(split)
        points = np.asarray(s.extras[key], dtype=np.float64).reshape(len(s), -1)
        labels = np.unique(s.classes, return_inverse=True)[1]
        members = np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1])
        eligible = np.flatnonzero(np.bincount(labels)[labels] >= 2)  # the target needs a second image of its class
        if len(eligible) == 0 or len(members) < 2:
            raise MetricUnavailable(
                f"the nearest-neighbour protocol on split {split!r} needs classes with at least 2 images "
                "and at least 2 classes")
        rng = self.rng("pairs-nn", split)
        targets = rng.choice(eligible, size=n, replace=len(eligible) < n)
        class_idx = np.empty(n, dtype=np.int64)
        for k, t in enumerate(targets):
            same = members[labels[t]]
            class_idx[k] = rng.choice(same[same != t])
        content_idx = nearest_other_class(points[targets], labels[targets], points, labels)
        found = content_idx >= 0
        if not found.any():
            raise MetricUnavailable(f"no image of split {split!r} shares annotated {key!r} coordinates with another class")
        t = targets[found]
        return TransferPairs(class_idx[found], content_idx[found], s.images[t], f"nearest-neighbour:{key}")

    def _target_pairs(self, split: str, n: int) -> TransferPairs:
        s = self.split(split)
        if not s.has_factors:
            key = self.neighbour_annotation(split)
            if key is not None:
                return self._neighbour_pairs(split, key, n)
            raise MetricUnavailable(
                f"dataset {self.data.name!r} has no ground-truth content factors and no content annotation "
                f"({' or '.join(map(repr, NEIGHBOUR_ANNOTATIONS))} in Split.extras), so neither the "
                "ground-truth nor the nearest-neighbour content-transfer protocol applies"
            )
        fallback = self.data.splits.get("train") if split != "train" else None
        rng = self.rng("pairs", split)
        ci, cj, tgt = [], [], []
        for _ in range(50):
            i = rng.integers(0, len(s), size=2 * n)
            j = rng.integers(0, len(s), size=2 * n)
            keep = s.classes[i] != s.classes[j]
            i, j = i[keep], j[keep]
            t_here = s.lookup(s.classes[i], s.factors[j])
            t_train = (fallback.lookup(s.classes[i], s.factors[j]) if fallback is not None and fallback.has_factors
                       else np.full(len(i), -1))
            ok = (t_here >= 0) | (t_train >= 0)
            ci.append(i[ok]); cj.append(j[ok]); tgt.append(np.stack([t_here[ok], t_train[ok]], 1))
            if sum(len(a) for a in ci) >= n:
                break
        i, j, t = (np.concatenate(a)[:n] for a in (ci, cj, tgt))
        if len(i) == 0:
            raise MetricUnavailable(f"no transfer pair of split {split!r} has a ground-truth target")
        targets = np.empty((len(i),) + s.images.shape[1:], dtype=np.uint8)
        here = t[:, 0] >= 0
        targets[here] = s.images[t[here, 0]]
        if (~here).any():
            targets[~here] = fallback.images[t[~here, 1]]
        return TransferPairs(i, j, targets)

    def transferred(self, split: str = "test", n: int | None = None, *, need_targets: bool = True) -> np.ndarray:
        """uint8 images generated for :meth:`transfer_pairs` (computed once per run)."""
        p = self.transfer_pairs(split, n, need_targets=need_targets)

        def compute():
            s = self.split(split)
            parts = self.map_batches(self.method.transfer, s.images[p.class_idx], s.images[p.content_idx])
            return np.concatenate([to_uint8(x, f"transfer on split {split!r} ({p.protocol} pairs)") for x in parts])

        key = ("transferred", split, n or self.options.n_pairs)
        return self.memo(key if p.protocol != "random" else key + ("random",), compute)

    def reconstructed_at(self, split: str, index: np.ndarray) -> np.ndarray:
        """uint8 reconstructions decode(encode(x)) of the images at ``index`` of a split (memoised)."""
        index = np.asarray(index, dtype=np.int64)

        def compute():
            parts = self.map_batches(self.method.reconstruct, self.split(split).images[index])
            return np.concatenate([to_uint8(x, f"reconstruction of split {split!r}") for x in parts])

        return self.memo(("reconstructed-at", split, index.tobytes()), compute)

    def reconstructed(self, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """(originals, reconstructions) for up to ``max_codes`` images of the split."""

        def compute():
            s = self.split(split)
            idx = np.arange(len(s))
            if len(idx) > self.options.max_codes:
                idx = np.sort(self.rng("recon", split).choice(len(s), self.options.max_codes, replace=False))
            parts = self.map_batches(self.method.reconstruct, s.images[idx])
            return s.images[idx], np.concatenate([to_uint8(x, f"reconstruction of split {split!r}") for x in parts])

        return self.memo(("reconstructed", split), compute)


@dataclass
class CodeSample:
    """A class-stratified sample of a split's images: ``index`` (sorted), the classes it keeps and
    the classes left out for having fewer than ``k`` images or for not fitting in the cap."""

    index: np.ndarray
    k: int
    cap: int  # 0: no cap
    n_classes: int
    n_small_classes: int  # classes with fewer than k images in the split, left out
    n_capped_classes: int  # classes left out because cap // k classes is all the cap holds
    capped: bool = False  # False: every image of the kept classes


def class_stratified_cap(labels: np.ndarray, *, cap: int, k: int, rng: np.random.Generator) -> CodeSample:
    """At most ``cap`` (0: no cap) indices of ``labels`` with at least ``k`` of every class kept.

    Classes with fewer than ``k`` images are left out. If the rest fit in the cap, all of their
    images are taken; otherwise every kept class first gets ``k`` random images and the rest of
    the cap is drawn uniformly from their remaining images (so larger classes keep more, in
    proportion). If even ``k`` per class does not fit, a seeded random subset of ``cap // k``
    classes is kept; the counts of classes left out either way are recorded."""
    if k < 1:
        raise ValueError(f"k={k} codes per class must be at least 1")
    labels = np.asarray(labels)
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    eligible = np.flatnonzero(counts >= k)
    n_small = len(values) - len(eligible)
    n_eligible_images = int(counts[eligible].sum())
    if cap <= 0 or n_eligible_images <= cap:
        index = np.flatnonzero(np.isin(inverse, eligible))
        return CodeSample(index, k, max(cap, 0), len(eligible), n_small, 0)
    kept = eligible
    if len(eligible) * k > cap:
        kept = np.sort(rng.choice(eligible, size=cap // k, replace=False))
    reserved, pool = [], []
    for cls in kept:
        members = rng.permutation(np.flatnonzero(inverse == cls))
        reserved.append(members[:k])
        pool.append(members[k:])
    reserved_idx = np.concatenate(reserved) if reserved else np.zeros(0, dtype=np.int64)
    pool_idx = np.concatenate(pool) if pool else np.zeros(0, dtype=np.int64)
    extra = rng.choice(pool_idx, size=min(len(pool_idx), cap - len(reserved_idx)), replace=False)
    index = np.sort(np.concatenate([reserved_idx, extra])).astype(np.int64)
    return CodeSample(index, k, cap, len(kept), n_small, len(eligible) - len(kept), capped=True)


def nearest_other_class(queries: np.ndarray, query_labels: np.ndarray, points: np.ndarray,
                        labels: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """For each query row, the index of the nearest row of ``points`` with a different label
    (mean squared difference over the coordinates finite in both; NaN = missing); -1 where no
    row of another label shares a finite coordinate with the query."""
    qm, pm = np.isfinite(queries), np.isfinite(points)
    q, p = np.where(qm, queries, 0.0), np.where(pm, points, 0.0)
    qm, pm = qm.astype(np.float64), pm.astype(np.float64)
    out = np.full(len(queries), -1, dtype=np.int64)
    for start in range(0, len(queries), chunk):
        sl = slice(start, start + chunk)
        shared = qm[sl] @ pm.T
        sq = (q[sl] ** 2) @ pm.T + qm[sl] @ (p ** 2).T - 2.0 * q[sl] @ p.T
        with np.errstate(invalid="ignore", divide="ignore"):
            dist = np.where(shared > 0, sq / np.maximum(shared, 1.0), np.inf)
        dist[query_labels[sl, None] == labels[None, :]] = np.inf
        best = dist.argmin(axis=1)
        ok = np.isfinite(dist[np.arange(len(best)), best])
        out[sl] = np.where(ok, best, -1)
    return out


def transfer_grid(method: Any, split: Split, *, size: int, seed: int, device: torch.device):
    """A PIL image: class images down the left, content images across the top, transfers inside."""
    from PIL import Image

    rng = np.random.default_rng([seed, 7])
    classes = np.unique(split.classes)
    pick = rng.choice(classes, size=min(size, len(classes)), replace=False)
    class_idx = np.array([rng.choice(np.flatnonzero(split.classes == c)) for c in pick])
    content_idx = rng.choice(len(split), size=len(class_idx), replace=False)
    n = len(class_idx)
    with torch.no_grad():
        ci = to_float(split.images[np.repeat(class_idx, n)], device)
        cj = to_float(split.images[np.tile(content_idx, n)], device)
        out = to_uint8(method.transfer(ci, cj), "transfer grid")
    h, w, c = split.images.shape[1:]
    canvas = np.full(((n + 1) * h, (n + 1) * w, c), 255, dtype=np.uint8)
    for k in range(n):
        canvas[(k + 1) * h : (k + 2) * h, 0:w] = split.images[class_idx[k]]
        canvas[0:h, (k + 1) * w : (k + 2) * w] = split.images[content_idx[k]]
        for m in range(n):
            canvas[(k + 1) * h : (k + 2) * h, (m + 1) * w : (m + 2) * w] = out[k * n + m]
    if c == 1:
        canvas = canvas[:, :, 0]
    image = Image.fromarray(canvas)
    if h < 64:  # enlarge small images so the grid is readable (nearest neighbour: no new detail)
        image = image.resize((image.width * (64 // h), image.height * (64 // h)), Image.NEAREST)
    return image
