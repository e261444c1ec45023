"""Executors: where the cells of a sweep run. Plugins register them (``register_executors``);
the built-ins are ``local`` (this machine, ``--jobs N`` processes), ``ray`` and ``slurm``.

An executor receives fully resolved, JSON-able cells and returns their records. The run store is
the only shared state: every cell writes its own directory atomically under a lock, so a rerun
skips finished cells whichever executor ran them.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Protocol

from disentbench.runner import Cell, execute

Report = Callable[[int, int, Cell, dict[str, Any]], None]


class Executor(Protocol):
    def run(self, cells: list[Cell], report: Report | None = None) -> list[dict[str, Any]]:
        """Run every cell (or submit them and return, for queueing systems) and return records."""


def execute_json(cell_json: dict[str, Any], threads: int = 0) -> dict[str, Any]:
    """Run one cell from its JSON form in this process (what a remote worker calls): fresh plugin
    registries, ``threads`` torch threads if given; the record comes back as plain JSON data."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    return execute(Cell.from_json(cell_json))


def threads_per_worker(workers: int) -> int:
    """Divide this machine's cores between workers so that they do not oversubscribe it."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
