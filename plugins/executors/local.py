"""The local executor: cells in this process, or in ``jobs`` worker processes.

With several workers each gets ``cores // jobs`` torch threads (no oversubscription) and, when
the cells run on CUDA and several GPUs are visible, a GPU of its own."""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from disentbench.executors import Report, execute_json, limit_threads, threads_per_worker
from disentbench.runner import Cell, run_sweep
from disentbench.store import failure_record


@dataclass
class LocalConfig:
    jobs: int = 1  # worker processes; 1 = run in this process
    threads: int = 0  # torch threads per worker; 0 = the machine's cores divided by jobs

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {self.jobs}")


_GPU: list[str] = []


def _init_worker(gpu_queue: Any, threads: int) -> None:
    if gpu_queue is not None:
        gpu = gpu_queue.get()
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)  # before torch initialises CUDA in this process
        _GPU.append(str(gpu))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    limit_threads(threads)


def _gpu_count(cells: list[Cell]) -> int:
    if not any(str(c.runtime.get("device", "cpu")).startswith("cuda") for c in cells):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class LocalExecutor:
    Config = LocalConfig

    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()

    def run(self, cells: list[Cell], report: Report | None = None) -> list[dict[str, Any]]:
        jobs = min(self.config.jobs, max(1, len(cells)))
        if jobs == 1:
            return run_sweep(cells, report=report)
        threads = self.config.threads or threads_per_worker(jobs)
        ctx = mp.get_context("spawn")  # no inherited torch/CUDA state
        gpus = _gpu_count(cells)
        queue = None
        if gpus > 1:
            queue = ctx.Manager().Queue()
            for k in range(jobs):
                queue.put(k % gpus)
        records: list[dict[str, Any] | None] = [None] * len(cells)
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(queue, threads)) as pool:
            # per-step bars of parallel workers would interleave on one terminal: each worker says
            # when a cell starts, and the report line says when it ends
            futures = {pool.submit(execute_json, {**cell.to_json(), "progress": False}, announce=cell.progress): k
                       for k, cell in enumerate(cells)}
            for done, future in enumerate(as_completed(futures), 1):
                k = futures[future]
                try:
                    record = future.result()
                except Exception as exc:  # the worker process itself died (killed, out of memory)
                    record = failure_record(cells[k], exc, f"worker died: {exc}")
                records[k] = record
                if report is not None:
                    report(done, len(cells), cells[k], record)
        return [r for r in records if r is not None]
