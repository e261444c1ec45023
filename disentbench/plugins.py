"""Plugin loading: a fresh pluggy manager per call site, entry points loaded one by one.

Built-in plugins arrive through the ``disentbench`` entry-point group exactly like third-party
ones. A plugin that fails to import or to register is reported by name; the others still load.
"""
from __future__ import annotations

import importlib
import os
import traceback
from importlib import metadata
from typing import Iterable

import pluggy

from disentbench import hookspecs
from disentbench.protocols import ContractError
from disentbench.registry import KINDS, PluginInfo, Registries

ENTRY_POINT_GROUP = "disentbench"
BUILTIN_DISTRIBUTION = "disentbench"
#: comma-separated modules to load as plugins without packaging them (like PYTEST_PLUGINS)
PLUGINS_ENV = "DISENTBENCH_PLUGINS"


def _entry_points() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    unique: dict[tuple[str, str], metadata.EntryPoint] = {}
    for ep in eps:  # an editable install can expose the same distribution twice
        dist = ep.dist.name if ep.dist is not None else ""
        unique.setdefault((dist, ep.name), ep)
    return list(unique.values())


def plugin_manager(
    plugins: Iterable[object] = (), *, entry_points: bool = True
) -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    """Build a new plugin manager: the entry-point plugins (unless disabled), the modules named in
    ``$DISENTBENCH_PLUGINS``, then ``plugins`` (objects, e.g. a test's plugin module)."""
    pm = pluggy.PluginManager("disentbench")
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    if entry_points:
        for ep in _entry_points():
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                distribution=dist.name if dist is not None else None,
                version=dist.version if dist is not None else None,
                builtin=dist is not None and dist.name == BUILTIN_DISTRIBUTION,
            )
            if pm.has_plugin(ep.name) or ep.name in infos:
                info.name = f"{info.distribution}:{ep.name}"
            try:
                pm.register(ep.load(), name=info.name)
            except Exception as exc:  # report by name, keep loading the rest
                info.error = f"failed to import {ep.value!r}: {type(exc).__name__}: {exc}"
            infos[info.name] = info
    for module_name in [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]:
        info = PluginInfo(name=module_name, distribution=None, version=None)
        try:
            pm.register(importlib.import_module(module_name), name=module_name)
        except Exception as exc:
            info.error = f"failed to import {module_name!r} (from ${PLUGINS_ENV}): {type(exc).__name__}: {exc}"
        infos[module_name] = info
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        pm.register(plugin, name=name)
        registered_name = pm.get_name(plugin) or name
        infos[registered_name] = PluginInfo(name=registered_name, distribution=None, version=None)
    return pm, infos


def collect(pm: pluggy.PluginManager, infos: dict[str, PluginInfo] | None = None) -> Registries:
    """Call every registration hook of every plugin, remembering who registered what."""
    regs = Registries(plugins=dict(infos or {}))
    for hook_name, (attr, _spec_type) in KINDS.items():
        registry = getattr(regs, attr)
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            origin = impl.plugin_name
            info = regs.plugins.setdefault(origin, PluginInfo(name=origin))

            def register(spec: object, _origin: str = origin, _info: PluginInfo = info) -> None:
                try:
                    registry.add(spec, origin=_origin)
                except ContractError as exc:  # refused, naming what it lacks; the plugin's other specs register
                    _info.error = f"{_info.error}; {exc}" if _info.error else str(exc)
                    return
                _info.registered.setdefault(attr, []).append(spec.name)  # type: ignore[attr-defined]

            try:
                impl.function(register=register)
            except Exception as exc:
                info.error = f"{hook_name} raised {type(exc).__name__}: {exc}"
                info.traceback = traceback.format_exc()
    # a name two plugins registered is set aside, naming both; commands that do not use it still work
    for attr, _spec_type in KINDS.values():
        registry = getattr(regs, attr)
        registry.labels = {name: info.label for name, info in regs.plugins.items()}
        for name, origins in registry.clashes.items():
            for origin in dict.fromkeys(origins):
                regs.plugins[origin].clashes.append(f"{registry.kind} {name!r}")
    return regs


def load_registries(plugins: Iterable[object] = (), *, entry_points: bool = True) -> Registries:
    """Fresh registries from the installed entry points plus any extra plugin objects."""
    pm, infos = plugin_manager(plugins, entry_points=entry_points)
    return collect(pm, infos)
