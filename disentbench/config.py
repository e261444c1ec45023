"""Configuration: dataclass configs with paper defaults, overridden by ``--set`` and TOML files.

Overrides are addressed by plugin name: ``lord.epochs=5``, ``synth3d.resolution=32``,
``train.precision=bf16``. A TOML file uses one table per name (``[lord] epochs = 5``).
The harness's own options (:class:`TrainOptions`, :class:`EvalOptions`) and the scoping of
overrides to registered names (:func:`check_scopes`, :func:`config_of`) live here too, so that
the runner and the suites build configs the same way without importing each other.
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import hashlib
import json
import math
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    pass


Overrides = dict[str, dict[str, Any]]


# -- what values an option accepts -----------------------------------------------------------
# Every numeric option is checked when a config is built (before any work): by the name conventions
# in RULES, or by its field's metadata, ``field(default=0.8, metadata=allowed(bounds(0, 1)))``;
# ``metadata=allowed(None)`` turns the check off. Floats must also be finite.

ALLOWED = "disentbench.allowed"  # the dataclass field metadata key


@dataclass(frozen=True)
class Rule:
    """What a numeric option accepts: ``text`` says it in words, ``test`` checks a value."""

    text: str
    test: Callable[[Any], bool]


def bounds(low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False,
           integer: bool = False, note: str = "") -> Rule:
    """Values in [low, high] (``*_open``: the bound itself excluded); ``note`` says what a bound means."""
    kind = "an integer" if integer else "a number"
    if low is not None and high is not None:
        text = f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        text = f"{kind} {'>' if low_open else '≥'} {low:g}"
    elif high is not None:
        text = f"{kind} {'<' if high_open else '≤'} {high:g}"
    else:
        text = kind

    def test(v: Any) -> bool:
        return ((low is None or (v > low if low_open else v >= low))
                and (high is None or (v < high if high_open else v <= high)))

    return Rule(f"{text}{f' ({note})' if note else ''}", test)


def allowed(rule: Rule | None) -> dict[str, Any]:
    """Field metadata: this option accepts what ``rule`` accepts (None: any value of its type)."""
    return {ALLOWED: rule}


def _image_size(v: Any) -> bool:
    return v >= 8 and (v // 4) * 4 == v and (v // 4) & (v // 4 - 1) == 0


#: (name pattern, rule), first match wins; ``fnmatch`` patterns on the field name
RULES: list[tuple[str, Rule]] = [
    ("max_steps", bounds(0, integer=True, note="0 = no limit")),
    ("micro_batch", bounds(0, integer=True, note="0 = off")),
    ("*threads", bounds(0, integer=True, note="0 = the default")),
    ("max_*", bounds(0)),
    ("*epochs", bounds(1, integer=True)),
    ("*batch_size", bounds(1, integer=True)),
    ("*steps", bounds(1, integer=True)),
    ("*_every", bounds(0, integer=True, note="0 = never")),
    ("resolution", Rule("4 × a power of two, at least 8 (8, 16, 32, 64, 128, ...: what the networks in "
                        "disentbench.nn take)", _image_size)),
    ("*resolution", bounds(1, integer=True)),
    ("lr", bounds(0, low_open=True)),
    ("lr_*", bounds(0, low_open=True)),
    ("*_lr", bounds(0, low_open=True)),
    ("jobs", bounds(1, integer=True)),
    ("seed", bounds(0, integer=True)),
    ("*_seed", bounds(0, integer=True)),
]


def rule_for(f: dataclasses.Field) -> Rule | None:
    """The rule for a dataclass field: its metadata's, else the first name convention that matches."""
    if ALLOWED in f.metadata:
        return f.metadata[ALLOWED]
    return next((rule for pattern, rule in RULES if fnmatch.fnmatchcase(f.name, pattern)), None)


def check_value(f: dataclasses.Field, value: Any, where: str) -> None:
    """Raise :class:`ConfigError` naming ``where``, the value and what is allowed, if ``value`` is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    rule = rule_for(f)
    if ALLOWED in f.metadata and rule is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} = {value!r} is not allowed: expected a finite number"
                          + (f", {rule.text}" if rule else ""))
    if rule is not None and not rule.test(value):
        raise ConfigError(f"{where} = {value!r} is not allowed: expected {rule.text}")


def _digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """``"0,1,2"``, ``"0-4,7"`` → seeds in the order given, each once."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not (_digits(lo) and (not dash or _digits(hi))) or (dash and int(hi) < int(lo)):
            raise ConfigError(f"{option} {text!r}: {part.strip()!r} is not a seed; expected non-negative integers "
                              "or ranges, e.g. 0,1,2 or 0-4,7")
        for s in range(int(lo), int(hi if dash else lo) + 1):
            if s not in seeds:
                seeds.append(s)
    return seeds


def check_seeds(seeds: Any, where: str = "seeds") -> list[int]:
    """A non-empty list of non-negative integer seeds, or :class:`ConfigError` naming the bad one."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ConfigError(f"{where} = {seeds!r} is not allowed: expected a list of non-negative integers")
    seeds = list(seeds)
    if not seeds:
        raise ConfigError(f"{where} is empty: give at least one seed, e.g. 0")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"{where}: seed {s!r} is not allowed: expected non-negative integers")
    return seeds


def parse_value(raw: str) -> Any:
    """A TOML literal (``5``, ``1e-3``, ``true``, ``[1, 2]``, ``"x"``) or else the bare string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def parse_sets(items: list[str] | None) -> Overrides:
    """``["lord.epochs=5", "train.precision=bf16"]`` → ``{"lord": {"epochs": 5}, "train": {...}}``."""
    out: Overrides = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        scope, dot, field = key.strip().partition(".")
        if not sep or not dot or not scope or not field:
            raise ConfigError(f"--set {item!r}: expected NAME.FIELD=VALUE, e.g. lord.epochs=5")
        out.setdefault(scope, {})[field] = parse_value(raw.strip())
    return out


def load_toml(path: str | Path) -> Overrides:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    for scope, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: top-level key {scope!r} must be a table like [lord]")
    return data


def merge(*layers: Mapping[str, Mapping[str, Any]] | None) -> Overrides:
    """Later layers win, field by field."""
    out: Overrides = {}
    for layer in layers:
        for scope, table in (layer or {}).items():
            out.setdefault(scope, {}).update(table)
    return out


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} fits none of {annotation}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(v, a, where) for v, a in zip(value, args))
        inner = args[0] if args else Any
        return origin(_coerce(v, inner, where) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return build(annotation, value, where=where)
    return value


def build(cls: type, overrides: Mapping[str, Any] | None = None, *, where: str = "") -> Any:
    """Instantiate the dataclass ``cls`` from its defaults plus ``overrides``, type-checked."""
    where = where or cls.__name__
    if not dataclasses.is_dataclass(cls):
        raise ConfigError(f"{where}: config {cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(overrides or {}) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(fields))}"
        )
    kwargs = {
        name: _coerce(value, hints.get(name, Any), f"{where}.{name}") for name, value in (overrides or {}).items()
    }
    for name, f in fields.items():  # the values given and the defaults, before __post_init__ sees them
        check_value(f, kwargs.get(name, f.default), f"{where}.{name}")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return obj


ADDED = "disentbench.added"  # dataclass field metadata: an option added after runs were recorded


def added(default: Any, metadata: Mapping[str, Any] | None = None) -> Any:
    """A field for an option added to a config that runs were already recorded with: its default
    must be the behaviour those runs had, and while it holds its default it is left out of
    :func:`to_dict` (so out of the run's identity). Earlier runs keep their run ids and records,
    and a config without the field builds to the same behaviour (the default)."""
    return dataclasses.field(default=default, metadata={ADDED: True, **(metadata or {})})


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a dataclass config (tuples become lists), without the :func:`added`
    fields that hold their defaults."""
    out = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    for f in dataclasses.fields(config):
        if f.metadata.get(ADDED) and getattr(config, f.name) == f.default:
            out.pop(f.name, None)
    return out


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any) -> str:
    """Short SHA-256 of the canonical JSON of ``obj`` (the identity of a run's configuration)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:12]


# -- the harness's options and the scoping of overrides ----------------------------------------

HARNESS_SCOPES = ("train", "eval")


class PlanError(ConfigError):
    """The sweep cannot start: an unknown name or an invalid option."""


SEMANTIC = "disentbench.semantic"  # dataclass field metadata: False = not part of a run's identity


def runtime_option(default: Any) -> Any:
    """A field that changes how fast a run goes, not what it computes: left out of
    :meth:`RunConfig.semantic` (so out of the config hash and the record's ``config``)."""
    return dataclasses.field(default=default, metadata={SEMANTIC: False})


def is_semantic(f: dataclasses.Field) -> bool:
    return f.metadata.get(SEMANTIC, True)


@dataclass
class TrainOptions:
    """Harness-level options (``--set train.FIELD=VALUE``); they apply to every method alike."""

    device: str = runtime_option("cpu")
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    compile: bool = runtime_option(False)
    data_on_device: bool = runtime_option(True)  # keep the training images on the device as uint8
    checkpoint_every: int = runtime_option(0)  # steps between checkpoints; 0 = at the end of every epoch
    num_threads: int = runtime_option(0)  # torch intra-op threads; 0 = leave torch's default
    # compute a step's batch in chunks of at most this many images, adding up their gradients before
    # the one update (methods whose step supports it: StepContext.update_chunks); the same update up
    # to float rounding and how the step's noise is drawn, with a smaller working set (on a CPU a
    # batch of 256 that overflows the caches runs at half the images/s of two chunks of 128); 0 = off
    micro_batch: int = runtime_option(0)
    max_steps: int = 0  # stop each stage after this many steps (smoke tests); 0 = no limit
    # the training budget in images seen, all stages together, split across the stages in proportion
    # to their nominal sizes (epochs x images per epoch) and rounded to whole batches; it replaces the
    # stages' epochs (fewer or more), so that methods compared on one scale see as many images; 0 = off
    max_images: int = 0


@dataclass
class EvalOptions:
    """Evaluation settings shared by all metrics (``--set eval.FIELD=VALUE``)."""

    n_pairs: int = 2000  # content-transfer pairs (class from x_i, content from x_j)
    batch_size: int = 128
    max_codes: int = 10000  # images encoded per split for code-based metrics
    grid_size: int = 6  # rows and columns of the transfer grid
    # the generator check after training (a collapsed generator fails the run, see generator_check);
    # a threshold of 0 turns its check off (the evidence is still recorded)
    check_images: int = 64  # a fixed seeded sample of test images, the same for every method and seed
    check_min_spread: float = 0.1  # fail if the reconstructions' spread across inputs is below this × the real images'
    check_max_mse: float = 1.0  # fail if reconstruction MSE is above this × the MSE of the training split's mean image


def harness_options(overrides: Overrides) -> tuple[TrainOptions, EvalOptions]:
    """The ``train`` and ``eval`` options of ``overrides``, built and checked."""
    train = build(TrainOptions, overrides.get("train", {}), where="train")
    evaluation = build(EvalOptions, overrides.get("eval", {}), where="eval")
    return train, evaluation


def run_device(requested: str | None, overrides: Overrides) -> str:
    """The device of a plan's runs, decided once, at plan time. ``requested`` is ``--device``:
    anything but ``"auto"`` wins (a ``--set train.device`` that disagrees is a :class:`PlanError`);
    with ``"auto"`` (the command line's default) or ``None`` (``plan`` called without one),
    ``--set train.device`` decides, else ``"auto"`` resp. :class:`TrainOptions`' default. ``"auto"``
    becomes ``"cuda"`` where CUDA is available, else ``"cpu"``."""
    given = overrides.get("train", {}).get("device")
    if requested not in (None, "auto"):
        if given is not None and given != "auto" and given != requested:
            raise PlanError(f"--device {requested} and --set train.device={given} disagree; give one of them")
        name = requested
    else:
        name = given if given is not None else (requested or TrainOptions.device)
    if name == "auto":
        import torch

        name = "cuda" if torch.cuda.is_available() else "cpu"
    return str(name)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides one run, resolved at plan time and shipped as JSON to any worker.

    :meth:`semantic` is the run's identity: the record's ``config`` and, hashed, its run id. The
    :func:`runtime_option` fields of ``train`` (device, threads, checkpoints, ...) are not in it
    (:meth:`runtime`). ``device`` is resolved (never ``"auto"``) and is ``train.device``.
    ``import_error`` says why the method's module could not be imported (the run then fails).
    ``method_config`` is the method's ``Config`` object that ``method`` was made from at plan time, so
    that a run in the planning process does not build it again; it is neither compared nor shipped
    (a worker that receives the JSON builds it from ``method``)."""

    method: dict[str, Any]  # "name" and the method's options
    dataset: dict[str, Any]  # "name" and the dataset's options
    metrics: dict[str, dict[str, Any]]  # metric name -> its options
    train: TrainOptions
    eval: EvalOptions
    device: str
    import_error: str = ""
    method_config: Any = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.device == "auto" or self.train.device != self.device:
            raise ValueError(f"RunConfig: device {self.device!r} must be resolved and equal train.device "
                             f"({self.train.device!r})")

    def semantic(self) -> dict[str, Any]:
        """What identifies the run, exactly as records store it and :func:`config_hash` hashes it
        (an import error stays in the method's table as ``_import_error``, as records have it)."""
        method = dict(self.method)
        if self.import_error:
            method = {"name": method.pop("name"), "_import_error": self.import_error, **method}
        return {
            "method": method,
            "dataset": dict(self.dataset),
            "metrics": {name: dict(options) for name, options in self.metrics.items()},
            "train": {f.name: getattr(self.train, f.name) for f in dataclasses.fields(self.train) if is_semantic(f)},
            "eval": dataclasses.asdict(self.eval),
        }

    def runtime(self) -> dict[str, Any]:
        """The ``train`` options that are not in :meth:`semantic` (how the run goes, not what it computes)."""
        return {f.name: getattr(self.train, f.name) for f in dataclasses.fields(self.train) if not is_semantic(f)}

    def config_hash(self) -> str:
        return config_hash(self.semantic())

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "dataset": self.dataset, "metrics": self.metrics,
                "train": dataclasses.asdict(self.train), "eval": dataclasses.asdict(self.eval),
                "device": self.device, "import_error": self.import_error}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunConfig":
        return cls(method=dict(data["method"]), dataset=dict(data["dataset"]), metrics=dict(data["metrics"]),
                   train=build(TrainOptions, data["train"], where="train"),
                   eval=build(EvalOptions, data["eval"], where="eval"),
                   device=data["device"], import_error=data.get("import_error", ""))

    @classmethod
    def from_semantic(cls, config: Mapping[str, Any], device: str = "cpu") -> "RunConfig":
        """The run config of a record's ``config`` (:meth:`semantic`'s output), run on ``device``."""
        method = dict(config["method"])
        import_error = method.pop("_import_error", "")
        return cls(method=method, dataset=dict(config["dataset"]), metrics=dict(config["metrics"]),
                   train=build(TrainOptions, {**config["train"], "device": device}, where="train"),
                   eval=build(EvalOptions, config["eval"], where="eval"), device=device, import_error=import_error)


def check_scopes(regs: Any, overrides: Overrides) -> None:
    """Every scope of ``overrides`` names exactly one registered method, dataset, metric or executor
    of ``regs`` (:class:`~disentbench.registry.Registries`), or ``train``/``eval``; else
    :class:`PlanError` with a did-you-mean and the known names."""
    known = (set(regs.methods.names()) | set(regs.datasets.names()) | set(regs.metrics.names())
             | set(regs.executors.names()) | set(HARNESS_SCOPES))
    for scope in overrides:
        if scope not in known:
            close = difflib.get_close_matches(scope, sorted(known), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise PlanError(
                f"option scope {scope!r} names no registered method, dataset, metric or executor, nor "
                f"'train'/'eval'.{hint} "
                f"Known: {', '.join(sorted(known))}"
            )
        kinds = [k for k, r in (("method", regs.methods), ("dataset", regs.datasets), ("metric", regs.metrics),
                                ("executor", regs.executors)) if scope in r]
        if len(kinds) > 1:
            raise PlanError(f"option scope {scope!r} is ambiguous: it names a {' and a '.join(kinds)}")


def configure(spec: Any, overrides: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A registered plugin's ``Config`` object under ``overrides`` (``spec.configure``) and its
    JSON-able dict; a plugin without a ``Config`` takes no options (``(None, {})``, and
    :class:`PlanError` if some are given)."""
    config = spec.configure(overrides)
    if config is None:
        if overrides:
            raise PlanError(f"{spec.kind} {spec.name!r} takes no options, but got {sorted(overrides)}")
        return None, {}
    return config, to_dict(config)


def config_of(spec: Any, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able config of a registered plugin under ``overrides`` (see :func:`configure`)."""
    return configure(spec, overrides)[1]
