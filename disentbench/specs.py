"""Specs: what a plugin registers. Cheap to build; the target is imported only when used.

A target is either an object or a ``"module:attribute"`` string (lm-eval's lazy targets), so that
registering builds no model, imports no heavy library and downloads nothing.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping

from disentbench import config as cfg
from disentbench import protocols
from disentbench.suites import load_suite

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")

SUPERVISION_LEVELS = ("class-supervised", "unsupervised", "video-pairs", "pose-supervised")
Direction = Literal["max", "min", "info"]
ARROWS = {"max": "↑", "min": "↓", "info": ""}


def check_name(name: str, kind: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or "/" in name:
        raise ValueError(
            f"invalid {kind} name {name!r}: names are lowercase letters, digits, '-', '_' or '.', "
            "starting with a letter or digit, with no path separators"
        )
    return name


def load_target(target: Any) -> Any:
    """Import a ``"module:attr"`` target (or return a non-string target unchanged)."""
    if not isinstance(target, str):
        return target
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target {target!r} must look like 'package.module:Attribute'")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class _Spec:
    kind: ClassVar[str] = "plugin"
    protocol: ClassVar[type | None] = None  # what the target implements (disentbench.protocols)
    name: str
    target: Any
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, self.kind)

    def check(self) -> None:
        """Refuse a target that is a class lacking members of :attr:`protocol`
        (:class:`~disentbench.protocols.ContractError`); a lazy string target is checked by :meth:`load`."""
        if self.protocol is not None and not isinstance(self.target, str):
            protocols.check(self.kind, self.name, self.target, self.protocol)

    def load(self) -> Any:
        """Import and return the target (a class or factory); a lazy target is checked against
        :attr:`protocol` on import (one given as an object is checked when it is registered)."""
        target = load_target(self.target)
        if self.protocol is not None and isinstance(self.target, str):
            protocols.check(self.kind, self.name, target, self.protocol)
        return target

    def configure(self, options: Mapping[str, Any] | None = None) -> Any:
        """The target's ``Config`` dataclass built from its defaults plus ``options`` (type-checked;
        errors name the plugin), or ``None`` when the target has no ``Config``."""
        target = self.load()
        return cfg.build(target.Config, options, where=self.name) if hasattr(target, "Config") else None

    def build(self, options: Mapping[str, Any] | None = None, *args: Any) -> Any:
        """The one factory: ``target(config, *args)`` with the config from :meth:`configure`, or
        ``target(*args)`` when the target has no ``Config`` (a method passes its ``DataInfo``)."""
        return self.instantiate(self.configure(options), *args)

    def instantiate(self, config: Any, *args: Any) -> Any:
        """``target(config, *args)`` with a config :meth:`configure` already built, or
        ``target(*args)`` when it is ``None`` (the target has no ``Config``)."""
        target = self.load()
        return target(*args) if config is None else target(config, *args)

    def target_path(self) -> str:
        t = self.target
        return t if isinstance(t, str) else f"{getattr(t, '__module__', '?')}:{getattr(t, '__qualname__', t)}"


@dataclass(frozen=True)
class MethodSpec(_Spec):
    """A disentanglement method. ``target`` is a class implementing :class:`disentbench.protocols.Method`
    with a ``Config`` dataclass attribute holding the paper's defaults."""

    kind: ClassVar[str] = "method"
    protocol: ClassVar[type | None] = protocols.Method
    supervision: str = "class-supervised"
    paper: str = ""
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.supervision not in SUPERVISION_LEVELS:
            raise ValueError(
                f"method {self.name!r}: supervision {self.supervision!r} is not one of {SUPERVISION_LEVELS}"
            )


@dataclass(frozen=True)
class DatasetSpec(_Spec):
    """A dataset. ``target`` is a class implementing :class:`disentbench.protocols.Dataset`."""

    kind: ClassVar[str] = "dataset"
    protocol: ClassVar[type | None] = protocols.Dataset
    factors: tuple[str, ...] = ()  # named ground-truth content factors, empty if none
    source: str = ""  # where the data comes from (URL or "generated")
    paper: str = ""


@dataclass(frozen=True)
class MetricSpec(_Spec):
    """A metric. ``keys`` maps each returned scalar to its direction: "max" (↑), "min" (↓) or
    "info" (reported beside, never ranked, e.g. chance level or the number of images used).

    ``requires`` names what the metric needs: "factors" (ground-truth content factors), "codes"
    (the method exposes codes), "weights:NAME" (a registered pretrained file), "extra:NAME"
    (a per-image annotation such as "extra:landmarks"), "package:NAME" (an optional library)."""

    kind: ClassVar[str] = "metric"
    protocol: ClassVar[type | None] = protocols.Metric
    keys: Mapping[str, Direction] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    paper: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, direction in self.keys.items():
            if direction not in ARROWS:
                raise ValueError(f"metric {self.name!r}: key {key!r} has direction {direction!r}, not max/min/info")


@dataclass(frozen=True)
class WeightSpec(_Spec):
    """A pretrained file: where to fetch it, its checksum and where it is cached.

    ``sha256`` may be a full digest or a prefix of at least 8 hex digits where only a prefix is
    published (torchvision names its files ``<name>-<sha256[:8]>.pth``). ``target`` is unused
    (``None``); weights are files, not code."""

    kind: ClassVar[str] = "weight"
    target: Any = None
    url: str = ""
    sha256: str = ""
    size: int | None = None
    filename: str = ""
    used_by: tuple[str, ...] = ()
    instructions: str = ""  # how to get it by hand when the URL cannot be reached

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.filename:
            raise ValueError(f"weight {self.name!r} needs a filename")
        if self.sha256 and (len(self.sha256) < 8 or not re.fullmatch(r"[0-9a-f]+", self.sha256)):
            raise ValueError(f"weight {self.name!r}: sha256 {self.sha256!r} must be >= 8 lowercase hex digits")


@dataclass(frozen=True)
class SuiteSpec(_Spec):
    """A named benchmark suite; ``target`` is the path of its TOML file (str or Path)."""

    kind: ClassVar[str] = "suite"

    def load(self) -> Any:
        return load_suite(Path(self.target), name=self.name)

    def target_path(self) -> str:
        return str(self.target)


@dataclass(frozen=True)
class CommandLineOption:
    """A flag of ``disentbench run`` that an executor adds (llm's ``register_commands``, for one
    flag): ``--jobs N`` sets the ``jobs`` field of the local executor's ``Config``. Its value is
    checked by that field's rule before any work; given with another executor it is refused."""

    flag: str  # "--jobs"
    field: str  # the field of the executor's Config it sets, "jobs"
    help: str = ""  # shown as "<executor> executor: <help>" in ``disentbench run --help``
    type: Callable[[str], Any] = str
    metavar: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"--[a-z0-9][a-z0-9\-]*", self.flag):
            raise ValueError(f"command-line option {self.flag!r} must look like --lowercase-words")


@dataclass(frozen=True)
class ExecutorSpec(_Spec):
    """Where sweep cells run (local processes, Ray, Slurm, ...). ``target`` builds an executor;
    ``options`` are the flags it adds to ``disentbench run``, each setting a field of its config."""

    kind: ClassVar[str] = "executor"
    requires: tuple[str, ...] = ()
    options: tuple[CommandLineOption, ...] = ()
