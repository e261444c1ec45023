"""Swap accuracy read by frozen judges (the approach of MSD-Benchmark, NeurIPS 2025).

For each content transfer ``G(class of A, content of B)`` on the scored split, small classifiers
trained once on real images (the *judges*: one per content factor, one for the class over the
classes being scored) read the output:

- ``content_accuracy``: every content judge reads B's factor (all factors right);
- ``class_accuracy``: the class judge reads A's class;
- ``copy_rate``: every content judge reads A's factors instead (the output copied the class image's
  content); only pairs whose A and B differ in content count.

Each is reported beside its chance (uniform guessing: 1/∏ factor sizes, 1/number of classes) and
beside the same judges on two reference outputs: the real target image (``real_*``: the judges'
ceiling) and the method's own reconstructions (``recon_*``: content judges on the reconstruction
of B, the class judge on the reconstruction of A; the method's image-quality ceiling).

Judges are instruments, not methods: they see real images only (the scored split and, for the
content judges, the training split too), a seeded held-out part of the scored split measures their
accuracy (``judge_*``, recorded beside every score), and a judge below ``min_judge_accuracy``
makes the metric unavailable with that reason. They are trained once per dataset, resolution and
judge configuration (seeded) and cached under the run's evaluator cache.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from disentbench.contracts import MetricResult, MetricUnavailable, Split
from disentbench.evaluation import to_float
from disentbench_plugins.metrics.preservation import EvaluatorNet, apply, split_fingerprint

JUDGE_VERSION = 1  # bump when the judges' networks or training change, so caches are rebuilt


@dataclass
class SwapConfig:
    split: str = "test"
    channels: int = 16  # width of each judge (preservation's EvaluatorNet)
    steps: int = 1000  # optimisation steps per judge (a budget in steps, not epochs)
    batch_size: int = 64
    lr: float = 2e-3
    content_pool: str = "train+scored"  # the content judges' real images: "train+scored" or "scored" (objects
    # without a canonical front, such as synth3d's, have poses defined only relative to each object)
    heldout_fraction: float = 0.2  # share of the scored split's images held out to measure the judges
    min_judge_accuracy: float = 0.5  # below this held-out accuracy (joint content; class) the metric is unavailable
    seed: int = 0  # the judges' own seed: the same judges for every method and run seed

    def judge_options(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("split", "min_judge_accuracy")}


@dataclass
class Judges:
    """Trained judges and their held-out accuracies."""

    content: list[torch.nn.Module]  # one per content factor
    classifier: torch.nn.Module
    class_ids: np.ndarray  # the class judge's output k is class class_ids[k]
    accuracy: dict[str, float]  # held-out: judge_content (all factors right), judge_class
    factor_accuracy: dict[str, float]  # held-out, per content factor
    fingerprint: str = ""  # SHA-256 of the judges' weights (judge_fingerprint)


def judge_fingerprint(models: list[torch.nn.Module]) -> str:
    """The first 12 hex digits of the SHA-256 of the judges' weights, in order. Judges trained from one
    seed on another machine (another CPU's float rounding) are other judges with other readings: rows
    whose notes name different fingerprints were not scored by the same instrument."""
    digest = hashlib.sha256()
    for model in models:
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def heldout_mask(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of held-out images: ``fraction`` of each label's images, at least one of every
    label with two or more images, none of a label with one (stratified, seeded)."""
    mask = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        if len(idx) < 2:
            continue
        k = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        mask[rng.choice(idx, size=k, replace=False)] = True
    return mask


def train_judge(images: np.ndarray, labels: np.ndarray, n_labels: int, config: SwapConfig, device: torch.device,
                seed: int) -> torch.nn.Module:
    """An :class:`EvaluatorNet` classifier trained with cross-entropy for ``config.steps`` steps on
    uniformly drawn batches (seeded: weights, batches)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EvaluatorNet(images.shape[-1], n_labels, config.channels).to(device)
    optimizer = torch.optim.Adam(model.parameters(), config.lr)
    targets = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    model.train()
    for _ in range(config.steps):
        index = torch.randint(len(images), (min(config.batch_size, len(images)),), generator=generator).numpy()
        loss = F.cross_entropy(model(to_float(images[index], device)), targets[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def _predict(model: torch.nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    return apply(model, images, device).argmax(1).numpy()


def fit_judges(ctx: Any, config: SwapConfig) -> Judges:
    """Train (or load from the cache) the judges for the scored split ``config.split``."""
    scored, train = ctx.split(config.split), ctx.split("train")
    if not scored.has_factors:
        raise MetricUnavailable(f"the swap judges need ground-truth content factors; dataset {ctx.data.name!r} has none")
    class_ids = np.unique(scored.classes)
    if len(class_ids) < 2:
        raise MetricUnavailable(f"split {config.split!r} has {len(class_ids)} class(es); the class judge needs 2 or more")
    rng = np.random.default_rng([config.seed, 11])
    held = heldout_mask(scored.classes, config.heldout_fraction, rng)
    if not held.any():
        raise MetricUnavailable(f"split {config.split!r} has no class with 2 or more images to hold out for the judges")
    # content judges: every real image of the training split and the scored split's non-held-out part
    if config.content_pool not in ("train+scored", "scored"):
        raise ValueError(f"swap.content_pool must be 'train+scored' or 'scored', not {config.content_pool!r}")
    scored_only = config.split == "train" or config.content_pool == "scored"
    pool_images = scored.images[~held] if scored_only else np.concatenate([train.images, scored.images[~held]])
    pool_factors = scored.factors[~held] if scored_only else np.concatenate([train.factors, scored.factors[~held]])
    class_labels = np.searchsorted(class_ids, scored.classes)

    key_data = {"version": JUDGE_VERSION, "options": config.judge_options(), "split": config.split,
                "scored": split_fingerprint(scored), "train": split_fingerprint(train),
                "source": (ctx.data.info or {}).get("checksums") or (ctx.data.info or {}).get("source")}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(ctx.cache_dir) / f"{ctx.data.name}-swap-judges-{key}.pt" if ctx.cache_dir else None
    n_factors = len(scored.factor_sizes)

    def build() -> tuple[list[torch.nn.Module], torch.nn.Module]:
        content = [train_judge(pool_images, pool_factors[:, f], scored.factor_sizes[f], config, ctx.device,
                               config.seed * 1000 + f) for f in range(n_factors)]
        classifier = train_judge(scored.images[~held], class_labels[~held], len(class_ids), config, ctx.device,
                                 config.seed * 1000 + 999)
        return content, classifier

    def load_or_build() -> tuple[list[torch.nn.Module], torch.nn.Module]:
        if path is None:
            return build()
        from filelock import FileLock  # parallel workers train the judges once; the others wait

        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if path.exists():
                saved = torch.load(path, map_location="cpu", weights_only=True)
                content = [EvaluatorNet(scored.images.shape[-1], size, config.channels)
                           for size in scored.factor_sizes]
                for model, state in zip(content, saved["content"]):
                    model.load_state_dict(state)
                classifier = EvaluatorNet(scored.images.shape[-1], len(class_ids), config.channels)
                classifier.load_state_dict(saved["classifier"])
                return [m.to(ctx.device).eval() for m in content], classifier.to(ctx.device).eval()
            content, classifier = build()
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            torch.save({"content": [m.state_dict() for m in content], "classifier": classifier.state_dict(),
                        "key": key_data}, tmp)
            os.replace(tmp, path)
            return content, classifier

    content, classifier = ctx.memo(("swap-judges", key), load_or_build)
    held_images = scored.images[held]
    reads = np.stack([_predict(m, held_images, ctx.device) for m in content], 1)
    per_factor = {name: float((reads[:, f] == scored.factors[held, f]).mean())
                  for f, name in enumerate(scored.factor_names)}
    accuracy = {"judge_content": float((reads == scored.factors[held]).all(1).mean()),
                "judge_class": float((_predict(classifier, held_images, ctx.device) == class_labels[held]).mean())}
    return Judges(content, classifier, class_ids, accuracy, per_factor, judge_fingerprint([*content, classifier]))


class Swap:
    """Content, class and copy accuracy of content transfers, read by frozen judges."""

    Config = SwapConfig

    def __init__(self, config: SwapConfig | None = None) -> None:
        self.config = config or SwapConfig()

    def compute(self, ctx: Any) -> MetricResult:
        c = self.config
        judges = fit_judges(ctx, c)
        weak = {k: v for k, v in judges.accuracy.items() if v < c.min_judge_accuracy}
        if weak:
            raise MetricUnavailable(
                "swap judge(s) below swap.min_judge_accuracy="
                f"{c.min_judge_accuracy} on held-out real images: "
                + ", ".join(f"{k} {v:.3f}" for k, v in weak.items())
                + "; give them more steps (swap.steps) or width (swap.channels)")
        split: Split = ctx.split(c.split)
        pairs = ctx.transfer_pairs(c.split)
        a, b = pairs.class_idx, pairs.content_idx
        class_of_a = np.searchsorted(judges.class_ids, split.classes[a])
        fa, fb = split.factors[a], split.factors[b]
        differ = (fa != fb).any(1)  # copy_rate is defined where A's content is not B's
        if not differ.any():
            raise MetricUnavailable("no transfer pair has a class image whose content differs from the content image's")

        def read(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            content = np.stack([_predict(m, images, ctx.device) for m in judges.content], 1)
            return content, _predict(judges.classifier, images, ctx.device)

        def scores(content_images: np.ndarray, class_images: np.ndarray) -> dict[str, float]:
            content, _ = read(content_images)
            _, klass = read(class_images)
            return {"content_accuracy": float((content == fb).all(1).mean()),
                    "class_accuracy": float((klass == class_of_a).mean()),
                    "copy_rate": float((content[differ] == fa[differ]).all(1).mean())}

        generated = ctx.transferred(c.split)
        values = scores(generated, generated)
        values.update({f"real_{k}": v for k, v in scores(pairs.targets, pairs.targets).items()})
        values.update({f"recon_{k}": v for k, v in scores(ctx.reconstructed_at(c.split, b),
                                                          ctx.reconstructed_at(c.split, a)).items()})
        chance_content = 1.0 / float(np.prod(split.factor_sizes))
        values.update(chance_content=chance_content, chance_class=1.0 / len(judges.class_ids),
                      chance_copy=chance_content, **judges.accuracy, n_pairs=float(len(a)),
                      n_copy_pairs=float(differ.sum()))
        notes = (f"judges: {len(judges.content)} content-factor classifier(s) and a class classifier over the "
                 f"{len(judges.class_ids)} classes of split {c.split!r}, trained {c.steps} steps on real images; "
                 f"held-out accuracy: content {judges.accuracy['judge_content']:.3f} ("
                 + ", ".join(f"{k} {v:.3f}" for k, v in judges.factor_accuracy.items())
                 + f"), class {judges.accuracy['judge_class']:.3f}; judge weights {judges.fingerprint}")
        return MetricResult(values, notes)
