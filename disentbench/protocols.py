"""The protocols a plugin's target implements, checked when it is registered (or, for a lazy
``"module:Class"`` target, when it is first imported): a class missing a member is refused with a
message naming what is missing, instead of failing hours later inside a run.

``Method`` is exactly what the harness calls on a method, which :class:`disentbench.method.BaseMethod`
provides (a plugin subclasses it and writes ``stages``, ``encode`` and ``decode``). This module
imports nothing heavy, so that checking costs no start-up time.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: torch and numpy are imported where a run needs them
    import torch

    from disentbench.contracts import Codes, DataBundle, MetricResult, Split
    from disentbench.evaluation import EvalContext
    from disentbench.training import Stage, TrainOptions, TrainResult


class ContractError(ImportError):
    """A plugin's target lacks members its protocol requires. An ImportError, because to the
    harness it is a target that cannot be used, like one that fails to import: a sweep records
    the method's runs as failed with this message, and the other methods still run."""


@runtime_checkable
class Method(Protocol):
    """Everything the harness calls on a method, exactly as :class:`disentbench.method.BaseMethod`
    (a ``torch.nn.Module``) provides it: a plugin subclasses BaseMethod and writes ``stages``,
    ``encode`` and ``decode``; the rest is inherited."""

    def stages(self, train: Split) -> list["Stage"]:
        """The training stages, in order (the harness runs the loop, precision and checkpoints)."""

    def fit(self, train: Split, options: "TrainOptions", *, seed: int = 0, checkpoint: Path | None = None,
            progress: bool = True) -> "TrainResult":
        """Train on the training split under ``seed`` (resuming from ``checkpoint`` if it exists)."""

    def encode(self, images: "torch.Tensor") -> Codes: ...

    def decode(self, class_code: "torch.Tensor", content_code: "torch.Tensor") -> "torch.Tensor": ...

    def transfer(self, class_images: "torch.Tensor", content_images: "torch.Tensor") -> "torch.Tensor":
        """Images with the class of ``class_images[k]`` and the content of ``content_images[k]``."""

    def reconstruct(self, images: "torch.Tensor") -> "torch.Tensor": ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...

    def to(self, device: Any) -> "Method": ...

    def eval(self) -> "Method": ...


@runtime_checkable
class Dataset(Protocol):
    """A dataset plugin; its ``Config`` dataclass holds resolution and protocol settings."""

    def load(self, data_dir: Path, cache_dir: Path, *, progress: bool = True) -> DataBundle: ...


@runtime_checkable
class Metric(Protocol):
    """A metric plugin: named scalars for a trained method on a dataset (keys as in its MetricSpec).

    A metric may also define ``applies(ctx) -> None``, raising :class:`MetricUnavailable` when it
    does not apply to the dataset (a person re-identification score on rendered objects); the
    harness calls it before checking the spec's weight and data requirements, so that this, not a
    missing file, is the reason recorded."""

    def compute(self, ctx: "EvalContext") -> Mapping[str, float] | MetricResult: ...


def members(protocol: type) -> list[str]:
    """The members a ``protocol`` requires, in the order it declares them."""
    return [name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")]


def missing(target: Any, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``target`` (a class or an instance) lacks or has as non-callables."""
    return [name for name in members(protocol) if not callable(getattr(target, name, None))]


def check(kind: str, name: str, target: Any, protocol: type) -> None:
    """Raise :class:`ContractError` naming the ``protocol`` members a class ``target`` lacks (a
    factory function is checked by what it builds, so it is not checked here)."""
    if not isinstance(target, type):
        return
    lacking = missing(target, protocol)
    if lacking:
        where = f"{target.__module__}:{target.__qualname__}"
        hint = (" (subclass disentbench.method.BaseMethod: it provides everything but stages, encode and decode)"
                if protocol is Method else "")
        raise ContractError(f"{kind} {name!r}: {where} does not implement the {protocol.__name__} protocol: it lacks "
                            f"{', '.join(lacking)}{hint}")
