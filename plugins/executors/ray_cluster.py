"""The Ray executor: each cell is a Ray task with its own CPU/GPU request.

``address`` joins an existing cluster (``--ray-address HOST:PORT`` or ``auto``); empty starts a
local Ray on this machine. Workers import disentbench and its plugins themselves, so every node
needs the same installation and a shared filesystem for ``--out`` (the run store)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from disentbench.executors import Report, execute_json
from disentbench.runner import PlannedRun
from disentbench.store import failure_record


@dataclass
class RayConfig:
    address: str = ""  # "" = start a local Ray; "auto" or "HOST:PORT" = join a cluster
    cpus_per_task: float = 1.0
    gpus_per_task: float = -1.0  # -1 = 1 for cells on CUDA, 0 otherwise
    num_cpus: int = 0  # for a local Ray: CPUs it may use (0 = all)
    shutdown: bool = True  # stop a Ray this executor started, when the sweep ends


class RayExecutor:
    Config = RayConfig

    def __init__(self, config: RayConfig | None = None) -> None:
        self.config = config or RayConfig()

    def run(self, cells: list[PlannedRun], report: Report | None = None) -> list[dict[str, Any]]:
        import ray

        c = self.config
        started = not ray.is_initialized()
        if started:
            if c.address:
                ray.init(address=c.address, log_to_driver=False)
            else:
                ray.init(num_cpus=c.num_cpus or None, include_dashboard=False, log_to_driver=False)
        try:
            threads = max(1, int(c.cpus_per_task))
            pending = {}
            for k, cell in enumerate(cells):
                gpus = c.gpus_per_task
                if gpus < 0:
                    gpus = 1.0 if cell.run.device.startswith("cuda") else 0.0
                task = ray.remote(num_cpus=c.cpus_per_task, num_gpus=gpus, max_retries=0)(execute_json)
                pending[task.remote(cell.to_json(), threads)] = k
            records: list[dict[str, Any] | None] = [None] * len(cells)
            done = 0
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                k = pending.pop(ready[0])
                try:
                    record = ray.get(ready[0])
                except Exception as exc:  # the task's worker died
                    record = failure_record(cells[k], exc, f"ray task failed: {exc}")
                records[k] = record
                done += 1
                if report is not None:
                    report(done, len(cells), cells[k], record)
            return [r for r in records if r is not None]
        finally:
            if started and c.shutdown:
                ray.shutdown()
