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

from disentbench.contracts import DataBundle, MetricUnavailable, Split


@dataclass
class EvalOptions:
    """Evaluation settings shared by all metrics (``--set eval.FIELD=VALUE``)."""

    n_pairs: int = 2000  # content-transfer pairs (class from x_i, content from x_j)
    batch_size: int = 128
    max_codes: int = 10000  # images encoded per split for code-based metrics
    grid_size: int = 6  # rows and columns of the transfer grid


def to_float(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) → float (N, C, H, W) in [0, 1] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [0, 1] → uint8 (N, H, W, C)."""
    return (images.detach().float().clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy())


@dataclass
class TransferPairs:
    """LORD's content-transfer protocol on one split: the class of ``class_idx[k]``, the content
    of ``content_idx[k]`` and the real image ``targets[k]`` showing exactly that combination
    (looked up in the same split, else in the training split, as SmallNorb-Poses needs)."""

    class_idx: np.ndarray
    content_idx: np.ndarray
    targets: np.ndarray  # uint8 (n, H, W, C)


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
        """(class codes, content codes, image indices) for up to ``max_codes`` images of a split."""

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

    def transfer_pairs(self, split: str = "test", n: int | None = None) -> TransferPairs:
        """Random pairs (i, j) of different classes whose ground-truth target exists (LORD Table 1)."""
        n = n or self.options.n_pairs

        def compute():
            s = self.split(split)
            if not s.has_factors:
                raise MetricUnavailable(
                    f"dataset {self.data.name!r} has no ground-truth content factors, so the "
                    "ground-truth content-transfer protocol does not apply"
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

        return self.memo(("pairs", split, n), compute)

    def transferred(self, split: str = "test", n: int | None = None) -> np.ndarray:
        """uint8 images generated for :meth:`transfer_pairs` (computed once per run)."""

        def compute():
            s = self.split(split)
            p = self.transfer_pairs(split, n)
            parts = self.map_batches(self.method.transfer, s.images[p.class_idx], s.images[p.content_idx])
            return np.concatenate([to_uint8(x) for x in parts])

        return self.memo(("transferred", split, n or self.options.n_pairs), compute)

    def reconstructed(self, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """(originals, reconstructions) for up to ``max_codes`` images of the split."""

        def compute():
            s = self.split(split)
            idx = np.arange(len(s))
            if len(idx) > self.options.max_codes:
                idx = np.sort(self.rng("recon", split).choice(len(s), self.options.max_codes, replace=False))
            parts = self.map_batches(self.method.reconstruct, s.images[idx])
            return s.images[idx], np.concatenate([to_uint8(x) for x in parts])

        return self.memo(("reconstructed", split), compute)


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
        out = to_uint8(method.transfer(ci, cj))
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
