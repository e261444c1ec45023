"""disentbench: a plugin-based benchmark for class/content disentanglement.

Plugins implement the hooks in :mod:`disentbench.hookspecs` with :data:`hookimpl` and register
specs (:mod:`disentbench.specs`) whose targets are imported only when a run needs them.
"""
from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("disentbench")

from disentbench.specs import (  # noqa: E402  (hookimpl must exist first for plugins importing us)
    CommandLineOption,
    DatasetSpec,
    ExecutorSpec,
    MethodSpec,
    MetricSpec,
    SuiteSpec,
    WeightSpec,
)

__all__ = [
    "__version__",
    "hookimpl",
    "MethodSpec",
    "DatasetSpec",
    "MetricSpec",
    "WeightSpec",
    "SuiteSpec",
    "ExecutorSpec",
    "CommandLineOption",
]
