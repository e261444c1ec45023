"""Suites: named, declarative sweeps in TOML (mteb's Benchmark). A suite lists methods,
datasets, metrics, seeds and per-plugin settings, and cites where its protocol comes from."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from disentbench.config import ConfigError, Overrides, tomllib

KNOWN_KEYS = {"name", "description", "methods", "datasets", "metrics", "seeds", "settings", "citation"}


@dataclass
class Suite:
    name: str
    description: str
    methods: str | list[str]
    datasets: list[str]
    metrics: str | list[str] = "all"
    seeds: list[int] = field(default_factory=lambda: [0])
    settings: Overrides = field(default_factory=dict)
    citation: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _names(value: Any, key: str, where: str, allow_all: bool) -> str | list[str]:
    if allow_all and value == "all":
        return "all"
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty list of names" + (' or "all"' if allow_all else ""))
    return value


def load_suite(path: Path, name: str | None = None) -> Suite:
    path = Path(path)
    where = f"suite file {path}"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(KNOWN_KEYS)}")
    for key in ("description", "methods", "datasets"):
        if key not in data:
            raise ConfigError(f"{where}: missing required key {key!r}")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers")
    settings = data.get("settings", {})
    if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
        raise ConfigError(f"{where}: [settings.NAME] tables must map option names to values")
    return Suite(
        name=name or data.get("name") or path.stem,
        description=str(data["description"]),
        methods=_names(data["methods"], "methods", where, True),
        datasets=_names(data["datasets"], "datasets", where, False),  # type: ignore[arg-type]
        metrics=_names(data.get("metrics", "all"), "metrics", where, True),
        seeds=seeds,
        settings=settings,
        citation=data.get("citation", {}),
        path=path,
    )
