"""The local executor: cells in this process, or in ``jobs`` worker processes.

With several workers each gets ``cores // jobs`` torch threads (no oversubscription) and, when
the cells run on CUDA and several GPUs are visible, a GPU of its own. A worker that dies fails
only the cell it was running; the cells it never started run in a restarted pool."""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from disentbench.executors import Report, execute_json, limit_threads, threads_per_worker
from disentbench.runner import PlannedRun, record_failure, run_sweep


@dataclass
class LocalConfig:
    jobs: int = 1  # worker processes; 1 = run in this process
    threads: int = 0  # torch threads per worker; 0 = the machine's cores divided by jobs

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {self.jobs}")


_GPU: list[str] = []
_STARTED: list[Any] = []  # this worker's queue for "cell k started in process pid" messages


def _init_worker(gpu_queue: Any, threads: int, started: Any = None) -> None:
    if gpu_queue is not None:
        gpu = gpu_queue.get()
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)  # before torch initialises CUDA in this process
        _GPU.append(str(gpu))
    if started is not None:
        _STARTED.append(started)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    limit_threads(threads)


def _run_cell(k: int, cell_json: dict[str, Any], announce: bool) -> dict[str, Any]:
    if _STARTED:
        _STARTED[0].put((k, os.getpid()))  # so that, if this process dies, the parent knows which cell it ran
    return execute_json(cell_json, announce=announce)


def _gpu_count(cells: list[PlannedRun]) -> int:
    if not any(c.run.device.startswith("cuda") for c in cells):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class LocalExecutor:
    Config = LocalConfig

    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()

    def run(self, cells: list[PlannedRun], report: Report | None = None) -> list[dict[str, Any]]:
        jobs = min(self.config.jobs, max(1, len(cells)))
        if jobs == 1:
            return run_sweep(cells, report=report)
        threads = self.config.threads or threads_per_worker(jobs)
        ctx = mp.get_context("spawn")  # no inherited torch/CUDA state
        gpus = _gpu_count(cells)
        queue = ctx.Manager().Queue() if gpus > 1 else None  # filled for each pool by _pass
        records: list[dict[str, Any] | None] = [None] * len(cells)
        done = 0

        def finish(k: int, record: dict[str, Any]) -> None:
            nonlocal done
            done += 1
            records[k] = record
            if report is not None:
                report(done, len(cells), cells[k], record)

        # A worker that dies (killed, out of memory, a method calling os._exit) breaks the whole pool:
        # every cell in it fails with BrokenProcessPool. Only the cell(s) it was running are
        # suspects; the others go to a fresh pool. Suspects run again one at a time, each alone in a
        # pool of its own, so a cell that kills its worker fails alone and the rest finish.
        pending, idle_breaks = list(range(len(cells))), 0
        while pending:
            broken = self._pass(ctx, cells, pending, jobs, threads, gpus, queue, finish)
            if broken is None:
                break
            suspects, pending, how = broken
            idle_breaks = 0 if suspects else idle_breaks + 1
            if idle_breaks == 2:  # workers die before they start any cell: no restart will help
                suspects, pending = pending, []
            for k in suspects:
                if len(suspects) > 1:  # which of them killed the pool is unknown: each runs alone
                    alone = self._pass(ctx, cells, [k], 1, threads, gpus, queue, finish)
                    if alone is None:
                        continue
                    how = alone[2]
                finish(k, record_failure(cells[k], "WorkerDied",
                                         f"the worker process running this cell died ({how}: killed, out of "
                                         f"memory, or the method ended the process); the other cells ran in a "
                                         f"restarted pool"))
        return [r for r in records if r is not None]

    def _pass(self, ctx: Any, cells: list[PlannedRun], todo: list[int], jobs: int, threads: int, gpus: int,
              queue: Any, finish: Any) -> tuple[list[int], list[int], str] | None:
        """Run cells ``todo`` in a pool of ``jobs`` workers. None when every cell came back; if a
        worker died: (cells started but not finished, cells never started, how it died)."""
        if queue is not None:  # one GPU per worker of this pool
            while not queue.empty():
                queue.get()
            for k in range(jobs):
                queue.put(k % gpus)
        started_q = ctx.SimpleQueue()
        started: dict[int, int] = {}
        processes: dict[int, Any] = {}
        finished: set[int] = set()

        def drain(pool: ProcessPoolExecutor) -> None:
            while not started_q.empty():
                k, pid = started_q.get()
                started[k] = pid
            processes.update(getattr(pool, "_processes", None) or {})  # for the exit code, where available

        with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=ctx, initializer=_init_worker,
                                 initargs=(queue, threads, started_q)) as pool:
            # per-step bars of parallel workers would interleave on one terminal: each worker says
            # when a cell starts, and the report line says when it ends
            futures = {pool.submit(_run_cell, k, {**cells[k].to_json(), "progress": False}, cells[k].progress): k
                       for k in todo}
            broken = False
            for future in as_completed(futures):
                k = futures[future]
                drain(pool)
                try:
                    record = future.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                except Exception as exc:  # the cell raised past execute(): a failure of that cell alone
                    record = record_failure(cells[k], type(exc).__name__, str(exc))
                finished.add(k)
                finish(k, record)
        if not broken:
            return None
        running = {k: pid for k, pid in started.items() if k not in finished}
        codes = [(pid, getattr(processes.get(pid), "exitcode", None)) for pid in running.values()]
        how = ", ".join(f"pid {pid}, exit code {code}" if code is not None else f"pid {pid}" for pid, code in codes)
        return ([k for k in todo if k in running], [k for k in todo if k not in finished and k not in running],
                how or "before it started a cell")
