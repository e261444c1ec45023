"""Configuration: dataclass configs with paper defaults, overridden by ``--set`` and TOML files.

Overrides are addressed by plugin name: ``lord.epochs=5``, ``synth3d.resolution=32``,
``train.precision=bf16``. A TOML file uses one table per name (``[lord] epochs = 5``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    pass


Overrides = dict[str, dict[str, Any]]


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
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return obj


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a dataclass config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any) -> str:
    """Short SHA-256 of the canonical JSON of ``obj`` (the identity of a run's configuration)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:12]
