"""The hooks a disentbench plugin can implement.

Every hook is collect-all: each receives a ``register`` callable and calls it once per spec.
Training and scoring live on the registered classes, never in hooks.
"""
from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("disentbench")


@hookspec
def register_methods(register: Callable) -> None:
    """Register disentanglement methods: ``register(MethodSpec(...))``."""


@hookspec
def register_datasets(register: Callable) -> None:
    """Register datasets: ``register(DatasetSpec(...))``."""


@hookspec
def register_metrics(register: Callable) -> None:
    """Register metrics: ``register(MetricSpec(...))``."""


@hookspec
def register_weights(register: Callable) -> None:
    """Register pretrained weight files that methods or metrics need: ``register(WeightSpec(...))``."""


@hookspec
def register_suites(register: Callable) -> None:
    """Register named benchmark suites (declarative TOML files): ``register(SuiteSpec(...))``."""


@hookspec
def register_executors(register: Callable) -> None:
    """Register sweep executors (where cells run): ``register(ExecutorSpec(...))``."""
