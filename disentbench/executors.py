"""Executors: where the cells of a sweep run. Plugins register them (``register_executors``);
the built-ins are ``local`` (this machine, ``--jobs N`` processes), ``ray`` and ``slurm``.

An executor receives a sweep's cells as :class:`~disentbench.runner.PlannedRun` (fully resolved,
JSON-able; ``runner.Cell`` is the same class under its former name) and returns their records.
The run store is the only shared state: every cell writes its own directory atomically under a
lock, so a rerun skips finished cells whichever executor ran them.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Protocol

from disentbench.runner import PlannedRun, execute

Report = Callable[[int, int, PlannedRun, dict[str, Any]], None]


class Executor(Protocol):
    def run(self, cells: list[PlannedRun], report: Report | None = None) -> list[dict[str, Any]]:
        """Run every cell (or submit them and return, for queueing systems) and return records."""


def execute_json(cell_json: dict[str, Any], threads: int = 0, announce: bool = False) -> dict[str, Any]:
    """Run one cell from its JSON form in this process (what a remote worker calls): fresh plugin
    registries, ``threads`` torch threads if given; the record comes back as plain JSON data.
    ``announce``: print a line when the cell starts (workers that run without progress bars)."""
    if threads:
        limit_threads(threads)
    cell = PlannedRun.from_json(cell_json)
    if announce:
        print(f"started: {cell.method} on {cell.dataset} seed {cell.seed} (worker {os.getpid()})", flush=True)
    return execute(cell)


def limit_threads(threads: int) -> None:
    """At most ``threads`` threads for torch and for the BLAS/OpenMP pools that numpy and
    scikit-learn use (threadpoolctl): parallel workers that each spin up a pool per core thrash the
    cores (the leakage MLPs of two workers ran 8x slower)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


def threads_per_worker(workers: int) -> int:
    """Divide this machine's cores between workers so that they do not oversubscribe it."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
