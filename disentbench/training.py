"""The shared training loop every method runs through.

A method describes its training as :class:`Stage` objects (epochs, batch size, sampler, an
optimisation step). The :class:`Trainer` owns everything else, identically for all methods:
batching from an in-memory uint8 copy of the data on the device, mixed precision, channels-last,
``torch.compile``, progress bars, the per-step loss log, checkpoints and resuming from them.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from disentbench.config import TrainOptions  # what methods import it from
from disentbench.contracts import Split
from disentbench.store import guard, quarantine
from disentbench.weights import CheckpointError, torch_load_safely



class TrainingDiverged(RuntimeError):
    """A loss term a training step returned is not finite (NaN or ±inf): the run fails at once,
    naming the method, stage, epoch, step and the term, instead of training on and being scored."""

    def __init__(self, method: str, stage: str, epoch: int, step: int, term: str, value: float,
                 others: Mapping[str, float] | None = None) -> None:
        self.method, self.stage, self.epoch, self.step, self.term, self.value = method, stage, epoch, step, term, value
        self.log: list[dict[str, Any]] = []
        also = ", ".join(f"{k} = {v}" for k, v in (others or {}).items() if k != term)
        super().__init__(
            f"{method} diverged: loss term {term!r} = {value} at stage {stage!r}, epoch {epoch}, step {step}"
            + (f" (also non-finite: {also})" if also else "")
            + "; lower that stage's learning rate (the method's --set options) and rerun")


def check_finite(losses: Mapping[str, Any], *, method: str, stage: str, epoch: int, step: int) -> dict[str, float]:
    """The logged values of a step's loss terms as floats; raises :class:`TrainingDiverged` if any
    is not finite, naming a specific term in preference to the total ``loss``."""
    out = {term: float(v) for term, v in losses.items()}
    bad = {term: v for term, v in out.items() if not math.isfinite(v)}
    if bad:
        term = next((k for k in bad if k != "loss"), next(iter(bad)))
        raise TrainingDiverged(method, stage, epoch, step, term, bad[term], bad)
    return out


@dataclass
class Batch:
    images: torch.Tensor  # (B, C, H, W) float in [0, 1]
    index: torch.Tensor  # (B,) positions in the training split
    labels: torch.Tensor  # (B,) contiguous class ids 0..n_classes-1
    factors: torch.Tensor | None = None  # (B, F) ground-truth factors where the split has them
    group_size: int = 1  # consecutive groups of this many images share a class


class Sampler(Protocol):
    """Yields the index arrays of one epoch. Must be a pure function of ``rng`` and the split."""

    def batches(self, rng: np.random.Generator, split: Split, labels: np.ndarray, batch_size: int) -> list[np.ndarray]: ...


@dataclass
class RandomSampler:
    """Shuffled images; the last incomplete batch is dropped when there is more than one batch."""

    def batches(self, rng, split, labels, batch_size):
        order = rng.permutation(len(labels))
        if len(order) <= batch_size:
            return [order]
        n = len(order) // batch_size
        return [order[k * batch_size : (k + 1) * batch_size] for k in range(n)]


@dataclass
class ClassGroupSampler:
    """Batches of ``batch_size // group_size`` classes with ``group_size`` images of each class,
    consecutive in the batch (pairs for DrNet/Esser et al., groups for ML-VAE)."""

    group_size: int = 2

    def batches(self, rng, split, labels, batch_size):
        g = self.group_size
        per_batch = max(1, batch_size // g)
        by_class = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
        by_class = [idx for idx in by_class if len(idx) > 0]
        n_batches = max(1, len(labels) // (per_batch * g))
        out = []
        for _ in range(n_batches):
            chosen = rng.choice(len(by_class), size=per_batch, replace=per_batch > len(by_class))
            groups = [rng.choice(by_class[c], size=g, replace=len(by_class[c]) < g) for c in chosen]
            out.append(np.concatenate(groups))
        return out


@dataclass
class Stage:
    """One phase of a method's training (LORD has two: latent optimisation, then encoders)."""

    name: str
    epochs: int
    batch_size: int
    step: Callable[[Batch, "StepContext"], Mapping[str, Any]]
    optimizers: Callable[[], dict[str, torch.optim.Optimizer]]
    sampler: Any = field(default_factory=RandomSampler)
    on_start: Callable[[], None] | None = None
    on_epoch_end: Callable[[int, "StepContext"], None] | None = None


class _Updated(nn.Module):
    """The parameters one update steps, as a module for DistributedDataParallel to wrap; its
    forward returns the loss, so that DDP prepares the gradient all-reduce of its backward."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        super().__init__()
        self.params = nn.ParameterList(params)

    def forward(self, loss: torch.Tensor) -> torch.Tensor:
        return loss


class StepContext:
    """What a training step gets from the harness: its optimizers, mixed precision and counters."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], device: torch.device,
                 precision: str, generator: torch.Generator, total_steps: int, world: int = 1,
                 micro_batch: int = 0) -> None:
        self.optimizers = optimizers
        self.micro_batch = micro_batch  # train.micro_batch: see chunks()
        self.world = world
        self.device = device
        self.precision = precision
        self.generator = generator
        self.total_steps = max(1, total_steps)
        self.step = 0
        self.epoch = 0
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self._parallel: dict[tuple[str, ...], DistributedDataParallel | None] = {}

    @property
    def progress(self) -> float:
        """Fraction of this stage done, in [0, 1] (for schedules such as capacity or annealing)."""
        return min(1.0, self.step / self.total_steps)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def update(self, loss: torch.Tensor, *names: str, retain_graph: bool = False) -> None:
        """Zero the named optimizers' gradients, back-propagate ``loss`` and step them."""
        self._update(1, lambda _: loss, names, retain_graph=retain_graph)

    def chunks(self, n: int, group_size: int = 1) -> list[slice]:
        """The slices of a batch of ``n`` images that :meth:`update_chunks` computes one at a time:
        at most ``train.micro_batch`` images each (the whole batch when it is off), whole groups of
        ``group_size`` consecutive images each, so that a group's shared code stays in one chunk."""
        size = self.micro_batch - self.micro_batch % max(1, group_size) if self.micro_batch else n
        size = max(size, max(1, group_size))
        return [slice(start, min(n, start + size)) for start in range(0, n, size)]

    def update_chunks(self, n: int, terms_of: Callable[[slice], Mapping[str, torch.Tensor]], *names: str,
                      group_size: int = 1) -> dict[str, torch.Tensor]:
        """:meth:`update` for a batch of ``n`` images computed in the chunks of :meth:`chunks`
        (``train.micro_batch``): ``terms_of(chunk)`` returns the loss terms on the images of that
        slice, ``"loss"`` among them, each a mean over those images. The chunks' losses, weighted by
        their share of the batch, add up to the batch's loss, and each is back-propagated before the
        next is computed, so the update is the batch's while only one chunk's activations are alive.
        Returns every term as the batch's mean (detached), for the step to log."""
        parts = self.chunks(n, group_size)
        logged: list[dict[str, torch.Tensor]] = []

        def part(k: int) -> torch.Tensor:
            weight = (parts[k].stop - parts[k].start) / n
            terms = terms_of(parts[k])
            logged.append({name: value.detach() * weight for name, value in terms.items()})
            return terms["loss"] * weight

        self._update(len(parts), part, names)
        return {name: sum(t[name] for t in logged) for name in logged[0]}

    def _update(self, n_parts: int, part_loss: Callable[[int], torch.Tensor], names: tuple[str, ...],
                retain_graph: bool = False) -> None:
        """Zero the named optimizers' gradients (all when none are named), back-propagate each part of
        the loss as it is computed (gradients add up) and step them once. Under data parallelism the
        gradients are all-reduced once, in the last part's backward, in buckets as they are ready."""
        names = names or tuple(self.optimizers)
        opts = [self.optimizers[n] for n in names]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        parallel = self._data_parallel(names) if self.world > 1 else None
        for k in range(n_parts):
            loss = part_loss(k)
            with contextlib.ExitStack() as stack:
                if parallel is not None:
                    if k < n_parts - 1:
                        stack.enter_context(parallel.no_sync())
                    loss = parallel(loss)
                stack.enter_context(torch.autocast(self.device.type, enabled=False))
                self.scaler.scale(loss).backward(retain_graph=retain_graph)
        for opt in opts:
            self.scaler.step(opt)

    def _data_parallel(self, names: tuple[str, ...]) -> DistributedDataParallel | None:
        """Data parallelism by torch's DistributedDataParallel: every rank computed the loss on its
        shard of the global batch, and DDP averages the gradients of the named optimizers'
        parameters over the ranks, bucket by bucket, while the backward pass runs. Methods call
        their sub-modules directly and several optimizers update different parts, so DDP wraps
        not the method but the parameters being updated, and its forward passes the loss through
        (one DDP per set of optimizer names, built at its first update; ranks start equal, seeded alike)."""
        if names not in self._parallel:
            seen: dict[int, nn.Parameter] = {}
            for name in names:
                for group in self.optimizers[name].param_groups:
                    for p in group["params"]:
                        if p.requires_grad:
                            seen.setdefault(id(p), p)
            self._parallel[names] = DistributedDataParallel(
                _Updated(list(seen.values())), find_unused_parameters=True, broadcast_buffers=False,
                init_sync=False) if seen else None
        return self._parallel[names]

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=self.device, generator=self.generator)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=self.device, generator=self.generator)

    def randperm(self, n: int) -> torch.Tensor:
        return torch.randperm(n, device=self.device, generator=self.generator)


def cosine_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], progress: float, minimum: float) -> None:
    """Set each parameter group's learning rate on a cosine from its base rate (progress 0) down to
    ``minimum`` (progress 1), as ``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``T_max`` the
    stage's steps and ``eta_min=minimum``. Stateless: a function of ``ctx.progress`` alone, so a
    resumed run continues on the same curve without a scheduler's state in the checkpoint."""
    scale = (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress)))) / 2.0
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["lr"] = minimum + (base - minimum) * scale


@dataclass
class TrainResult:
    log: list[dict[str, Any]]
    seconds: float
    images: int
    steps: int
    resumed_from_step: int = 0
    info: dict[str, Any] = field(default_factory=dict)  # what the method wants in the run record

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def dist_info() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed is initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed_from_env() -> tuple[int, int]:
    """Under ``torchrun`` (WORLD_SIZE > 1), join the process group — NCCL with one GPU per local
    rank where CUDA is available, gloo on CPUs — and return (rank, world size)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist_info()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available; use --device cpu")
    return device


def _atomic_torch_save(obj: Any, path: Path) -> None:
    guard(path)  # raises LockLost if another worker took this run over while we were paused
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _checkpoint_problem(state: Any) -> str | None:
    """Why ``state`` is not a checkpoint written by :meth:`Trainer._save` (None when it is)."""
    if not isinstance(state, dict):
        return f"not a checkpoint: a {type(state).__name__}, not a dict"
    kinds = {"method": dict, "optimizers": dict, "scaler": dict, "generator": torch.Tensor, "position": (list, tuple),
             "log": list}
    bad = [k for k, kind in kinds.items() if not isinstance(state.get(k), kind)]
    if bad:
        return f"not a checkpoint: missing or malformed {', '.join(bad)}"
    if len(state["position"]) != 5 or not all(isinstance(x, int) for x in state["position"]):
        return f"not a checkpoint: position {state['position']!r} is not 5 integers"
    return None


class Trainer:
    """Runs a method's stages with the harness options; checkpoints to ``checkpoint`` and resumes."""

    def __init__(self, method: nn.Module, train: Split, options: TrainOptions, *, seed: int = 0,
                 checkpoint: Path | None = None, progress: bool = True) -> None:
        self.method = method
        self.train = train
        self.options = options
        self.seed = seed
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.progress = progress
        self.device = resolve_device(options.device)
        self.labels = np.unique(train.classes, return_inverse=True)[1].astype(np.int64)
        self.rank, self.world = dist_info()

    def _shard(self, index: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of a global batch (groups of a class stay together)."""
        if self.world == 1:
            return index
        per = len(index) // self.world
        return index[self.rank * per : (self.rank + 1) * per]

    # -- data -------------------------------------------------------------------------------
    def _data(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        where = self.device if self.options.data_on_device else torch.device("cpu")
        images = torch.from_numpy(np.ascontiguousarray(self.train.images)).permute(0, 3, 1, 2).contiguous().to(where)
        labels = torch.from_numpy(self.labels).to(where)
        factors = None if self.train.factors is None else torch.from_numpy(self.train.factors).to(where)
        return images, labels, factors

    def _batch(self, data, index: np.ndarray, group_size: int) -> Batch:
        images, labels, factors = data
        idx = torch.from_numpy(index).to(images.device)
        x = images.index_select(0, idx).to(self.device, non_blocking=True).float().div_(255.0)
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(
            images=x,
            index=idx.to(self.device),
            labels=labels.index_select(0, idx).to(self.device),
            factors=None if factors is None else factors.index_select(0, idx).to(self.device),
            group_size=group_size,
        )

    # -- checkpoints ------------------------------------------------------------------------
    def _save(self, stage: int, epoch: int, batch: int, ctx: StepContext | None, log: list, steps: int) -> None:
        """Checkpoint at a position; ``ctx`` is None at a stage boundary (nothing of the stage to keep)."""
        if self.checkpoint is None or self.rank != 0:
            return
        _atomic_torch_save(
            {
                "method": self.method.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in ctx.optimizers.items()} if ctx else {},
                "scaler": ctx.scaler.state_dict() if ctx else {},
                "generator": ctx.generator.get_state() if ctx else torch.empty(0, dtype=torch.uint8),
                "position": [stage, epoch, batch, ctx.step if ctx else 0, steps],
                "log": log,
            },
            self.checkpoint,
        )

    def _load(self) -> dict[str, Any] | None:
        """The checkpoint to resume from; None when there is none, or when it is empty, truncated or
        not a checkpoint of this loop (rank 0 moves it aside with a warning naming it)."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return None

        try:  # device, memory and permission errors are raised as they are: they are not the file's fault
            state = torch_load_safely(self.checkpoint, what="training checkpoint",
                                      fix="delete it and run again (training restarts from the beginning)")
            problem = _checkpoint_problem(state)
        except CheckpointError as exc:
            problem = f"cannot be loaded: {str(exc).strip().splitlines()[0][:300]}"
        if problem is None:
            return state
        if self.rank == 0:
            quarantine(self.checkpoint, f"{problem}; training starts from the beginning")
        return None

    # -- the loop ---------------------------------------------------------------------------
    def _prepare(self) -> nn.Module:
        """The method on the device with the speed options applied (threads, layout, compile)."""
        if self.options.num_threads:
            torch.set_num_threads(self.options.num_threads)
        method = self.method.to(self.device)
        if self.options.channels_last:
            method.to(memory_format=torch.channels_last)
        if self.options.compile:
            for child in method.children():
                if any(True for _ in child.parameters()) and not isinstance(child, nn.Embedding):
                    child.compile()
        return method

    def time_steps(self, stage_index: int = 0, steps: int = 10, warmup: int = 3) -> dict[str, float]:
        """Speed of one stage's real training step under these options (autocast, scaling,
        layout, compile included): images/s over ``steps`` steps after ``warmup`` untimed ones,
        and FLOPs per image counted by ``torch.utils.flop_counter`` on one more step."""
        from torch.utils.flop_counter import FlopCounterMode

        method = self._prepare()
        data = self._data()
        stage = method.stages(self.train)[stage_index]
        if stage.on_start is not None:
            stage.on_start()
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed)
        ctx = StepContext(stage.optimizers(), self.device, self.options.precision, generator, warmup + steps + 1,
                          micro_batch=self.options.micro_batch)
        batches = stage.sampler.batches(np.random.default_rng([self.seed, stage_index]), self.train, self.labels,
                                        stage.batch_size)
        group = getattr(stage.sampler, "group_size", 1)
        method.train()

        def one(k: int) -> int:
            index = batches[k % len(batches)]
            batch = self._batch(data, index, group)
            with ctx.autocast():
                stage.step(batch, ctx)
            ctx.scaler.update()
            ctx.step += 1
            return len(index)

        def sync() -> None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)

        for k in range(warmup):
            one(k)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        sync()
        t0 = time.perf_counter()
        images = sum(one(warmup + k) for k in range(steps))
        sync()
        seconds = time.perf_counter() - t0
        with FlopCounterMode(display=False) as counter:
            n = one(warmup + steps)
        method.eval()
        return {"images_per_second": images / seconds, "seconds_per_step": seconds / steps,
                "flops_per_image": counter.get_total_flops() / n, "batch_size": float(n)}

    def run(self) -> TrainResult:
        from tqdm.auto import tqdm

        method = self._prepare()
        data = self._data()
        stages = method.stages(self.train)
        state = self._load()
        start_stage, start_epoch, start_batch, start_step, steps = (state["position"] if state else [0, 0, 0, 0, 0])
        resumed_from = steps
        log: list[dict[str, Any]] = list(state["log"]) if state else []
        if state and start_stage >= len(stages):  # every stage finished before the interruption
            method.load_state_dict(state["method"])
        images_seen, t0 = 0, time.perf_counter()
        budget = self.budget_steps(stages) if self.options.max_images else None
        method.train()
        for s_idx, stage in enumerate(stages):
            if s_idx < start_stage:
                continue
            if stage.on_start is not None:
                stage.on_start()
            optimizers = stage.optimizers()
            generator = torch.Generator(device=self.device)
            words = [self.seed, s_idx] + ([self.rank] if self.world > 1 else [])  # independent noise per rank
            generator.manual_seed(int(np.random.default_rng(words).integers(2**62)))
            group = getattr(stage.sampler, "group_size", 1)
            global_batch = stage.batch_size * self.world  # batch_size is per process, as in DDP
            n_batches = len(stage.sampler.batches(np.random.default_rng([self.seed, s_idx, 0]), self.train, self.labels, global_batch))
            total = stage.epochs * n_batches if budget is None else budget[s_idx]
            n_epochs = stage.epochs if budget is None else max(1, -(-total // max(1, n_batches)))
            if self.options.max_steps:
                total = min(total, self.options.max_steps)
            ctx = StepContext(optimizers, self.device, self.options.precision, generator, total, self.world,
                              self.options.micro_batch)
            if state and s_idx == start_stage:
                method.load_state_dict(state["method"])  # after on_start, which may rebuild modules
                if state["optimizers"]:  # resuming inside the stage, not at its start
                    for k, o in optimizers.items():
                        o.load_state_dict(state["optimizers"][k])
                    ctx.scaler.load_state_dict(state["scaler"])
                    generator.set_state(state["generator"])
                    ctx.step = start_step
            else:
                start_epoch, start_batch = 0, 0
            bar = tqdm(total=total, initial=ctx.step, desc=f"{type(method).__name__}:{stage.name}",
                       disable=not self.progress or self.rank != 0, leave=False, dynamic_ncols=True)
            done = ctx.step >= total
            for epoch in range(start_epoch, n_epochs):
                if done:
                    break
                ctx.epoch = epoch
                batches = stage.sampler.batches(np.random.default_rng([self.seed, s_idx, epoch]), self.train, self.labels, global_batch)
                first = start_batch if epoch == start_epoch else 0
                for b_idx in range(first, len(batches)):
                    batch = self._batch(data, self._shard(batches[b_idx]), group)
                    with ctx.autocast():
                        losses = stage.step(batch, ctx)
                    ctx.scaler.update()
                    ctx.step += 1
                    steps += 1
                    images_seen += len(batches[b_idx])
                    row = {"stage": stage.name, "epoch": epoch, "step": ctx.step}
                    try:
                        row.update(check_finite(losses, method=type(method).__name__, stage=stage.name,
                                                epoch=epoch, step=ctx.step))
                    except TrainingDiverged as exc:
                        exc.log = log  # the loss curve up to the divergence, for the run directory
                        raise
                    log.append(row)
                    bar.update(1)
                    if ctx.step % 10 == 0 or ctx.step == total:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in list(row.items())[3:6]})
                    every = self.options.checkpoint_every
                    if every and ctx.step % every == 0:
                        self._save(s_idx, epoch, b_idx + 1, ctx, log, steps)
                    if ctx.step >= total:
                        done = True
                        break
                if stage.on_epoch_end is not None:
                    stage.on_epoch_end(epoch, ctx)
                if not done:
                    self._save(s_idx, epoch + 1, 0, ctx, log, steps)
            bar.close()
            self._save(s_idx + 1, 0, 0, None, log, steps)
            state = None
        method.eval()
        seconds = time.perf_counter() - t0
        result = TrainResult(log=log, seconds=seconds, images=images_seen, steps=steps, resumed_from_step=resumed_from)
        epoch_steps = {st.name: len(st.sampler.batches(np.random.default_rng([self.seed, k, 0]), self.train, self.labels,
                                                       st.batch_size * self.world)) for k, st in enumerate(stages)}
        result.info["last_epoch"] = last_epoch_means(log, epoch_steps)
        if budget is not None:
            result.info["budget"] = {"max_images": self.options.max_images,
                                     "steps": {st.name: n for st, n in zip(stages, budget)}}
        return result

    def budget_steps(self, stages: list[Stage]) -> list[int]:
        """Steps per stage for ``max_images``: the budget split in proportion to the stages' nominal
        sizes (epochs x images per epoch), each share rounded to whole batches (at least one) so
        that the running total stays within half a batch of the running target."""
        sizes, per_batch = [], []
        for s_idx, stage in enumerate(stages):
            batches = stage.sampler.batches(np.random.default_rng([self.seed, s_idx, 0]), self.train, self.labels,
                                            stage.batch_size * self.world)
            per_batch.append(max(1.0, sum(len(b) for b in batches) / max(1, len(batches))))
            sizes.append(stage.epochs * per_batch[-1] * len(batches))
        total_size = sum(sizes) or 1.0
        steps, planned, target = [], 0.0, 0.0
        for size, batch in zip(sizes, per_batch):
            target += self.options.max_images * size / total_size
            n = max(1, round((target - planned) / batch)) if size > 0 else 0  # a stage of 0 epochs stays off
            steps.append(n)
            planned += n * batch
        return steps


def last_epoch_means(log: list[dict[str, Any]], epoch_steps: dict[str, int]) -> dict[str, dict[str, float]]:
    """Per stage, each logged term averaged over the stage's last epoch's worth of steps (how the
    objective ended; paper tables read e.g. ``method_info.last_epoch.latent.reconstruction``)."""
    out: dict[str, dict[str, float]] = {}
    for name, n in epoch_steps.items():
        rows = [row for row in log if row.get("stage") == name][-max(1, n):]
        keys = dict.fromkeys(k for row in rows for k in row if k not in ("stage", "epoch", "step"))
        out[name] = {k: float(np.mean([row[k] for row in rows if k in row])) for k in keys}
    return {k: v for k, v in out.items() if v}
