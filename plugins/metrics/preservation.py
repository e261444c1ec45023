"""Identity and pose preservation scores (Xiao et al. 2019, §4 and Tables 1-2), with evaluators the
harness trains itself on the dataset's real training images, so no download is needed.

- ``id_preservation``: an identity embedding f (L2-normalised) trained with the triplet loss
  max(f(x1)·f(y) − f(x1)·f(x2) + m, 0) (x1, x2 of one identity, y of another); the score is the
  mean of sigmoid(f(I_g)·f(I_id)) between each generated image and its identity image.
- ``pose_preservation``: a classifier of the pose factor (all content factors jointly, or one);
  the score is the mean probability it gives the generated image for the pose of the pose image.

Xiao et al. fine-tuned an ImageNet ResNet-50 (identity) and trained a car-pose classifier on the
Multi-View Car dataset; here both are small CNNs trained from scratch on the benchmark's own
training split, so scores compare methods with each other, not with the paper's numbers. Each
evaluator is trained once per dataset and configuration (fixed seed, the same for every method
and run seed) and cached under the run's evaluator cache.

Each evaluator trains for a stated budget of optimizer steps (``steps``; epochs would make the
budget shrink with the dataset: 20 epochs of a 120-image split are 20 steps, after which the
identity embedding had collapsed), on the training split less a seeded held-out part
(``holdout``). Before any score is given it must pass a quality check on real images it never
trained on (the scored split's, or for ``split = "train"`` the held-out part): the identity
embedding's verification AUC (same vs different identity pairs, ``min_auc``), the pose
classifier's accuracy above the majority-class chance (skill = (accuracy − chance) / (1 − chance),
``min_skill``). Below its threshold the metric is unavailable with the check's value as the reason;
above it the value is recorded beside the score.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from disentbench.contracts import MetricResult, MetricUnavailable, Split
from disentbench.evaluation import to_float

from disentbench_plugins.metrics.pretrained import check_images

EVALUATOR_VERSION = 2  # bump when the networks or their training change, so caches are rebuilt
# options that do not change the trained evaluator (kept out of its cache key)
NOT_TRAINING = ("split", "max_pairs", "min_auc", "min_skill", "check_pairs")


class EvaluatorNet(nn.Module):
    """A small CNN for any image size: a stem, four stride-2 stages of two 3×3 convolutions with
    batch norm, global average pooling, a linear head."""

    def __init__(self, in_channels: int, out_dim: int, channels: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
        c = channels
        for k in range(4):
            c_out = channels * 2 ** k
            layers += [nn.Conv2d(c, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            c = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# -- the identity embedding ----------------------------------------------------------------------

@dataclass
class IdPreservationConfig:
    split: str = "test"
    embedding_dim: int = 128
    channels: int = 32
    steps: int = 2000  # training budget in optimizer steps of batch_size images, whatever the dataset's size
    batch_size: int = 64
    images_per_identity: int = 4  # batches of batch_size / 4 identities × 4 images: triplets in every batch
    margin: float = 0.3  # m of the triplet loss, on cosine affinities
    lr: float = 1e-3
    seed: int = 0  # the evaluator's own seed: the same evaluator for every method and run seed
    holdout: float = 0.2  # share of the training images kept out of its training, for the quality check
    min_auc: float = 0.8  # quality check: verification AUC (same vs different identity) on real held-out images
    check_pairs: int = 1000  # same- and different-identity pairs of the quality check, each
    max_pairs: int = 0  # 0 = every pair of eval.n_pairs

    def training_options(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in NOT_TRAINING}


class IdentityEmbedding(nn.Module):
    """f: image → unit vector; trained with the triplet loss on dot-product affinities."""

    def __init__(self, in_channels: int, config: IdPreservationConfig) -> None:
        super().__init__()
        self.config = config
        self.net = EvaluatorNet(in_channels, config.embedding_dim, config.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)

    def stages(self, train: Split) -> list:
        from disentbench.training import ClassGroupSampler, Stage

        c = self.config

        def step(batch, ctx):
            f = self(batch.images)
            affinity = f @ f.T
            same = batch.labels[:, None] == batch.labels[None, :]
            eye = torch.eye(len(f), dtype=torch.bool, device=f.device)
            # every triplet of the batch (anchor x1, positive x2, negative y): f(x1)·f(y) − f(x1)·f(x2) + m
            margins = affinity[:, None, :] - affinity[:, :, None] + c.margin  # [anchor, positive, negative]
            valid = (same & ~eye)[:, :, None] & ~same[:, None, :]
            losses = F.relu(margins)[valid]
            # the mean over the triplets that still violate the margin ("batch all"; choosing only the
            # hardest triplet from the start collapses the embedding to one point)
            loss = losses.sum() / (losses > 0).sum().clamp(min=1)
            ctx.update(loss)
            return {"triplet": loss.detach(), "active": (losses > 0).float().mean()}

        # epochs = steps is an upper bound (every epoch has a batch); the Trainer stops at max_steps = steps
        return [Stage("identity", c.steps, c.batch_size, step,
                      lambda: {"adam": torch.optim.Adam(self.parameters(), c.lr)},
                      sampler=ClassGroupSampler(c.images_per_identity))]


# -- the pose classifier -------------------------------------------------------------------------

@dataclass
class PosePreservationConfig:
    split: str = "test"
    factor: str = ""  # the pose factor to classify; "" = all content factors jointly
    channels: int = 32
    steps: int = 2000  # training budget in optimizer steps of batch_size images, whatever the dataset's size
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    holdout: float = 0.2  # share of the training images kept out of its training, for the quality check
    # quality check: skill = (accuracy − chance) / (1 − chance) on real held-out images, chance = the majority
    # pose's share; 0.4 is the lower bound of "moderate" agreement on Cohen's kappa scale (Landis & Koch 1977)
    min_skill: float = 0.4
    max_pairs: int = 0

    def training_options(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in NOT_TRAINING}


def pose_labels(split: Split, factor: str) -> tuple[np.ndarray, int]:
    """(label per image, number of labels) of the pose factor ``factor`` ("" = all jointly)."""
    if not split.has_factors:
        raise MetricUnavailable("pose preservation needs ground-truth pose (content) factors; this dataset has none")
    if not factor:
        return split.content_labels(), int(np.prod(split.factor_sizes))
    if factor not in split.factor_names:
        raise ValueError(f"pose_preservation.factor {factor!r} is not one of the dataset's factors {split.factor_names}")
    k = split.factor_names.index(factor)
    return split.factors[:, k], int(split.factor_sizes[k])


class PoseClassifier(nn.Module):
    def __init__(self, in_channels: int, n_labels: int, config: PosePreservationConfig) -> None:
        super().__init__()
        self.config = config
        self.net = EvaluatorNet(in_channels, n_labels, config.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def stages(self, train: Split) -> list:
        from disentbench.training import Stage

        c = self.config
        labels = torch.from_numpy(pose_labels(train, c.factor)[0])

        def step(batch, ctx):
            loss = F.cross_entropy(self(batch.images), labels.to(batch.index.device)[batch.index])
            ctx.update(loss)
            return {"cross_entropy": loss.detach()}

        return [Stage("pose", c.steps, c.batch_size, step,
                      lambda: {"adam": torch.optim.Adam(self.parameters(), c.lr)})]


# -- training and caching ------------------------------------------------------------------------

def split_fingerprint(split: Split, max_images: int = 2048) -> str:
    """A cheap digest of a split: shapes, labels, factors and up to ``max_images`` evenly spaced images."""
    h = hashlib.sha256()
    h.update(repr((split.images.shape, split.factor_names, split.factor_sizes)).encode())
    h.update(np.ascontiguousarray(split.classes).tobytes())
    if split.factors is not None:
        h.update(np.ascontiguousarray(split.factors).tobytes())
    idx = np.linspace(0, len(split) - 1, num=min(len(split), max_images)).astype(np.int64)
    h.update(np.ascontiguousarray(split.images[idx]).tobytes())
    return h.hexdigest()


def holdout_index(train: Split, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images the evaluator trains on, images held out for its quality check): a seeded random
    ``fraction`` of the training split, the same for every method and run seed."""
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout {fraction} is not a share in [0, 1): set it to e.g. 0.2")
    order = np.random.default_rng([seed, 7]).permutation(len(train))
    n_held = int(round(fraction * len(train)))
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def trained_evaluator(ctx: Any, kind: str, build: Callable[[], nn.Module], options: dict[str, Any],
                      seed: int) -> tuple[nn.Module, dict]:
    """The model ``build()`` makes, trained with ``seed`` for ``options["steps"]`` steps on the
    dataset's training split less its held-out part (``options["holdout"]``), or loaded from the
    cache (``ctx.cache_dir/<dataset>-<kind>-<key>.pt``, key = evaluator version, options, data
    digest). Returns the model in eval mode on ``ctx.device`` and its training summary."""
    from disentbench.training import TrainOptions, Trainer

    train = ctx.split("train")
    fit = train.subset(holdout_index(train, options.get("holdout", 0.0), seed)[0])
    steps = int(options["steps"])
    if steps < 1:
        raise ValueError(f"{kind} evaluator: steps={steps}; give it a training budget of at least 1 step")
    key_data = {"version": EVALUATOR_VERSION, "kind": kind, "options": options, "data": split_fingerprint(train)}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(ctx.cache_dir) / f"{ctx.data.name}-{kind}-{key}.pt" if ctx.cache_dir else None

    def compute():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the initial weights: a function of the evaluator's seed only
            model = build()
        if path is None:
            return train_it(model)
        from filelock import FileLock  # parallel workers (--jobs) train each evaluator once, the others wait

        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if path.exists():
                from disentbench.weights import torch_load_safely  # one clean line naming the file on failure

                saved = torch_load_safely(path, what="cached evaluator", fix="delete it; the next run trains it again")
                model.load_state_dict(saved["state"])
                return model.to(ctx.device).eval(), dict(saved["summary"], cached=True)
            return train_it(model)

    def train_it(model):
        result = Trainer(model, fit, TrainOptions(device=str(ctx.device), max_steps=steps), seed=seed,
                         progress=ctx.progress).run()
        summary = {"train_seconds": result.seconds, "steps": result.steps, "images": result.images,
                   "train_images": len(fit), "final_loss": result.log[-1] if result.log else {}}
        if path is not None:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            torch.save({"state": model.state_dict(), "summary": summary, "key": key_data}, tmp)
            os.replace(tmp, path)
        return model.eval(), dict(summary, cached=False)

    return ctx.memo(("evaluator", kind, key), compute)


@torch.no_grad()
def apply(model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """The evaluator's outputs for uint8 (N, H, W, C) images (anything else raises)."""
    check_images(images, "preservation evaluator")
    out = [model(to_float(images[s : s + batch_size], device)).float().cpu() for s in range(0, len(images), batch_size)]
    return torch.cat(out)


def same_class_pairs(split: Split, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random pairs of different images of one class."""
    labels = np.unique(split.classes, return_inverse=True)[1]
    counts = np.bincount(labels)
    eligible = np.flatnonzero(counts[labels] >= 2)
    if len(eligible) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    a = rng.choice(eligible, size=n)
    b = np.array([rng.choice(np.flatnonzero((labels == labels[i]) & (np.arange(len(labels)) != i))) for i in a])
    return a, b


def different_class_pairs(split: Split, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random pairs of images of different classes."""
    if len(np.unique(split.classes)) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    a, b = [], []
    while sum(map(len, a)) < n:
        i, j = rng.integers(0, len(split), size=(2, 2 * n))
        keep = split.classes[i] != split.classes[j]
        a.append(i[keep]); b.append(j[keep])
    return np.concatenate(a)[:n], np.concatenate(b)[:n]


def verification_auc(same: np.ndarray, different: np.ndarray) -> float:
    """P(a same-identity similarity exceeds a different-identity one), ties counting ½: the area
    under the ROC curve of verifying identity by thresholding the similarity (Mann-Whitney U)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([same, different]))
    n_same, n_diff = len(same), len(different)
    return float((ranks[:n_same].sum() - n_same * (n_same + 1) / 2) / (n_same * n_diff))


def quality_images(ctx: Any, split_name: str, holdout: float, seed: int) -> tuple[Split, str]:
    """Real images the evaluator never trained on, for its quality check, and how to name them: the
    scored split where it is not the training split, else the held-out part of the training split."""
    if split_name != "train":
        split = ctx.split(split_name)
        return split, f"{len(split)} real images of split {split_name!r}"
    train = ctx.split("train")
    held = holdout_index(train, holdout, seed)[1]
    if len(held) == 0:
        raise MetricUnavailable("the evaluator's quality check needs real images it never trained on; with "
                                "split = 'train' that is the held-out part, which holdout = 0 leaves empty: set "
                                "holdout to e.g. 0.2")
    return train.subset(held), f"{len(held)} real training images held out from the evaluator's training"


def budget_note(kind: str, summary: dict, batch_size: int) -> str:
    return (f"{kind} evaluator trained for {summary.get('steps', '?')} steps of {batch_size} images on "
            f"{summary.get('train_images', '?')} training images")


ID_NOTE = ("identity evaluator: a small CNN trained here from scratch with the triplet loss on the training "
           "identities, not Xiao et al.'s ImageNet-pretrained ResNet-50; compare methods with each other, not "
           "with the paper's numbers")
POSE_NOTE = ("pose evaluator: a small CNN classifier of the pose factors trained here on the training split, not "
             "Xiao et al.'s Multi-View Car pose classifier; compare methods with each other")


class IdPreservation:
    """Mean sigmoid affinity between generated images and their identity images (higher is better)."""

    Config = IdPreservationConfig

    def __init__(self, config: IdPreservationConfig | None = None) -> None:
        self.config = config or IdPreservationConfig()

    def quality(self, ctx: Any, model: nn.Module) -> tuple[float, str]:
        """The embedding's verification AUC on real images it never trained on, and what they were."""
        c = self.config
        images, where = quality_images(ctx, c.split, c.holdout, c.seed)
        rng = ctx.rng("id_preservation-check", c.split)
        sa, sb = same_class_pairs(images, c.check_pairs, rng)
        da, db = different_class_pairs(images, c.check_pairs, rng)
        if len(sa) == 0 or len(da) == 0:
            raise MetricUnavailable(f"the identity evaluator's quality check needs pairs of the same and of different "
                                    f"identities among the {where}; there are none of one kind")
        f = apply(model, images.images, ctx.device)
        same, different = (f[sa] * f[sb]).sum(1).numpy(), (f[da] * f[db]).sum(1).numpy()
        return verification_auc(same, different), f"{len(sa)} same- and {len(da)} different-identity pairs of {where}"

    def compute(self, ctx: Any) -> MetricResult:
        c = self.config
        split = ctx.split(c.split)
        if len(np.unique(ctx.split("train").classes)) < 2:
            raise MetricUnavailable("the identity evaluator needs at least 2 training identities")
        model, summary = trained_evaluator(ctx, "identity", lambda: IdentityEmbedding(split.image_shape[0], c),
                                           c.training_options(), c.seed)
        auc, checked = self.quality(ctx, model)
        if not auc >= c.min_auc:
            raise MetricUnavailable(
                f"the identity evaluator fails its quality check: verification AUC {auc:.3f} on {checked} is below "
                f"id_preservation.min_auc = {c.min_auc} (0.5 = identities not separated), so its scores would not "
                f"measure identity ({budget_note('identity', summary, c.batch_size)}); train it longer "
                f"(id_preservation.steps) or on more identities")
        pairs = ctx.transfer_pairs(c.split, need_targets=False)
        n = min(len(pairs.class_idx), c.max_pairs or len(pairs.class_idx))
        ident, pose = pairs.class_idx[:n], pairs.content_idx[:n]
        f_gen = apply(model, ctx.transferred(c.split, need_targets=False)[:n], ctx.device)
        f_id = apply(model, split.images[ident], ctx.device)
        f_pose = apply(model, split.images[pose], ctx.device)

        def score(a: torch.Tensor, b: torch.Tensor) -> float:
            return float(torch.sigmoid((a * b).sum(1)).mean())

        a, b = same_class_pairs(split, n, ctx.rng("id_preservation", c.split))
        values = {"score": score(f_gen, f_id), "real_different": score(f_pose, f_id), "n_pairs": float(n),
                  "verification_auc": auc}
        if len(a):
            values["real_same"] = score(apply(model, split.images[a], ctx.device), apply(model, split.images[b], ctx.device))
        notes = [ID_NOTE, f"{budget_note('identity', summary, c.batch_size)}; quality check: verification AUC "
                          f"{auc:.3f} on {checked} (threshold {c.min_auc})"]
        return MetricResult(values, "; ".join(notes))


class PosePreservation:
    """Probability the pose classifier gives generated images for the pose of their pose image."""

    Config = PosePreservationConfig

    def __init__(self, config: PosePreservationConfig | None = None) -> None:
        self.config = config or PosePreservationConfig()

    def compute(self, ctx: Any) -> MetricResult:
        c = self.config
        split = ctx.split(c.split)
        labels, n_labels = pose_labels(split, c.factor)
        train_labels, n_train = pose_labels(ctx.split("train"), c.factor)
        if n_train != n_labels:
            raise MetricUnavailable(f"the training and {c.split!r} splits have different pose factor sizes")
        model, summary = trained_evaluator(ctx, "pose", lambda: PoseClassifier(split.image_shape[0], n_labels, c),
                                           c.training_options(), c.seed)
        images, checked = quality_images(ctx, c.split, c.holdout, c.seed)
        real_labels = pose_labels(images, c.factor)[0]
        predicted = apply(model, images.images, ctx.device).argmax(1).numpy()
        real_accuracy = float(np.mean(predicted == real_labels))
        chance = float(np.bincount(real_labels).max() / len(real_labels))
        skill = (real_accuracy - chance) / (1 - chance) if chance < 1 else 0.0
        if not skill >= c.min_skill:
            hint = (" Where pose has no canonical origin across objects (synth3d), score on the training split "
                    "(pose_preservation.split=train)." if c.split != "train" else "")
            raise MetricUnavailable(
                f"the pose classifier fails its quality check: accuracy {real_accuracy:.3f} on {checked} against "
                f"chance {chance:.3f} (the majority pose), skill (accuracy − chance) / (1 − chance) = {skill:.3f} below "
                f"pose_preservation.min_skill = {c.min_skill}, so its scores would not measure pose "
                f"({budget_note('pose', summary, c.batch_size)}); train it longer (pose_preservation.steps).{hint}")
        pairs = ctx.transfer_pairs(c.split, need_targets=False)
        n = min(len(pairs.class_idx), c.max_pairs or len(pairs.class_idx))
        target = torch.from_numpy(labels[pairs.content_idx[:n]])
        p_gen = apply(model, ctx.transferred(c.split, need_targets=False)[:n], ctx.device).softmax(1)
        values = {
            "score": float(p_gen.gather(1, target[:, None]).mean()),
            "accuracy": float((p_gen.argmax(1) == target).float().mean()),
            "real_accuracy": real_accuracy,
            "chance_accuracy": chance,
            "n_pairs": float(n),
        }
        notes = [POSE_NOTE, f"{budget_note('pose', summary, c.batch_size)}; quality check: accuracy "
                            f"{real_accuracy:.3f} on {checked}, chance {chance:.3f}, skill {skill:.3f} "
                            f"(threshold {c.min_skill})"]
        if c.split == "train":
            notes.append("scored on the training split's objects, whose other images the classifier was trained on")
        return MetricResult(values, "; ".join(notes))
