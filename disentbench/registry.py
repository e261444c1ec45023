"""Name → spec registries: unique names, errors with did-you-mean, collection from plugins."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Generic, Iterable, Iterator, TypeVar

from disentbench.specs import (
    DatasetSpec,
    ExecutorSpec,
    MethodSpec,
    MetricSpec,
    SuiteSpec,
    WeightSpec,
)

S = TypeVar("S")


class RegistryError(Exception):
    """Base class for registration and lookup errors."""


class DuplicateNameError(RegistryError):
    pass


class UnknownNameError(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class Registry(Generic[S]):
    """Specs of one kind, by name, remembering which plugin registered each.

    A name registered by two plugins is a clash: it is set aside (not listed by ``names()``, not in
    "all") and using it raises :class:`DuplicateNameError` naming both; every other name still works.
    """

    kind: str
    _specs: dict[str, S] = field(default_factory=dict)
    _origins: dict[str, str] = field(default_factory=dict)
    #: name -> [(plugin, spec), ...] of every plugin that registered a name more than once
    _clashes: dict[str, list[tuple[str, S]]] = field(default_factory=dict)
    #: plugin -> how to name it in messages, e.g. "plugin 'x' (distribution x-dist 1.0)"
    labels: dict[str, str] = field(default_factory=dict)

    def add(self, spec: S, origin: str = "?") -> None:
        kind = getattr(spec, "kind", None)
        if kind != self.kind:
            raise RegistryError(f"plugin {origin!r} registered a {kind or type(spec).__name__} as a {self.kind}")
        spec.check()  # type: ignore[attr-defined]  # a class lacking protocol members is refused, naming them
        name = spec.name  # type: ignore[attr-defined]
        if name in self._specs:
            self._clashes[name] = [(self._origins.pop(name), self._specs.pop(name))]
        if name in self._clashes:
            self._clashes[name].append((origin, spec))
            return
        self._specs[name] = spec
        self._origins[name] = origin

    @property
    def clashes(self) -> dict[str, list[str]]:
        """Each name registered more than once -> the plugins that registered it."""
        return {name: [origin for origin, _ in entries] for name, entries in sorted(self._clashes.items())}

    def clash_message(self, name: str) -> str:
        origins = self.clashes[name]
        who = " and by ".join(self.labels.get(o, f"plugin {o!r}") for o in origins)
        return (f"{self.kind} {name!r} is registered twice: by {who}; it cannot be used until one of them is "
                "uninstalled or renames it (everything else works)")

    def get(self, name: str) -> S:
        if name in self._clashes:
            raise DuplicateNameError(self.clash_message(name))
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def origin(self, name: str) -> str:
        return self._origins[name]

    def unknown_message(self, name: str) -> str:
        known = sorted(self._specs)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(known) if known else "(none registered)"
        return (f"unknown {self.kind} {name!r}.{hint} Registered {self.kind}s: {listing}. A {self.kind} of your own "
                f"plugin? Name its module in DISENTBENCH_PLUGINS (with it on PYTHONPATH) or install its package; "
                f"`disentbench plugins` shows what loaded")

    def resolve(self, names: str | Iterable[str]) -> list[S]:
        """Specs for "all", "a,b" or a list of names; every unknown name is reported at once."""
        if isinstance(names, str):
            if names.strip() == "all":
                return [self._specs[n] for n in sorted(self._specs)]
            names = [n.strip() for n in names.split(",") if n.strip()]
        names = list(names)
        clashing = [n for n in names if n in self._clashes]
        if clashing:
            raise DuplicateNameError("; ".join(self.clash_message(n) for n in clashing))
        unknown = [n for n in names if n not in self._specs]
        if unknown:
            raise UnknownNameError("; ".join(self.unknown_message(n) for n in unknown))
        seen: dict[str, S] = {}
        for n in names:
            seen.setdefault(n, self._specs[n])
        return list(seen.values())

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs or name in self._clashes

    def __iter__(self) -> Iterator[S]:
        return iter(self._specs[n] for n in sorted(self._specs))

    def __len__(self) -> int:
        return len(self._specs)


KINDS: dict[str, tuple[str, type]] = {
    # hook name                 registry attribute, spec type
    "register_methods": ("methods", MethodSpec),
    "register_datasets": ("datasets", DatasetSpec),
    "register_metrics": ("metrics", MetricSpec),
    "register_weights": ("weights", WeightSpec),
    "register_suites": ("suites", SuiteSpec),
    "register_executors": ("executors", ExecutorSpec),
}


@dataclass
class PluginInfo:
    """One loaded plugin: where it came from and what it registered."""

    name: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    clashes: list[str] = field(default_factory=list)  # names it registered that another plugin registered too

    @property
    def label(self) -> str:
        where = (f"distribution {self.distribution}{' ' + self.version if self.version else ''}" if self.distribution
                 else "not from an installed distribution")
        return f"plugin {self.name!r} ({where})"


@dataclass
class Registries:
    methods: Registry[MethodSpec] = field(default_factory=lambda: Registry("method"))
    datasets: Registry[DatasetSpec] = field(default_factory=lambda: Registry("dataset"))
    metrics: Registry[MetricSpec] = field(default_factory=lambda: Registry("metric"))
    weights: Registry[WeightSpec] = field(default_factory=lambda: Registry("weight"))
    suites: Registry[SuiteSpec] = field(default_factory=lambda: Registry("suite"))
    executors: Registry[ExecutorSpec] = field(default_factory=lambda: Registry("executor"))
    plugins: dict[str, PluginInfo] = field(default_factory=dict)

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.error]

    def clash_messages(self) -> list[str]:
        """One line per name that two plugins registered (each names both plugins and distributions)."""
        return [registry.clash_message(name) for attr, _ in KINDS.values() for registry in [getattr(self, attr)]
                for name in registry.clashes]

    def plugin_of(self, kind_attr: str, name: str) -> PluginInfo | None:
        origin = getattr(self, kind_attr).origin(name)
        return self.plugins.get(origin)
