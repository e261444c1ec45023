"""The Slurm executor, through submitit: the cells become one job array.

Each task runs :func:`disentbench.executors.execute_json`. Training checkpoints every
``checkpoint_every`` steps into the run directory; when Slurm preempts a task or its time runs
out, submitit's checkpointing requeues it and the rerun resumes from the last checkpoint (the run
store's lock heartbeat lets the requeued task take over the dead one's lock). ``wait = false``
submits and returns; `disentbench leaderboard` later renders whatever finished."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from disentbench.executors import Report, execute_json
from disentbench.runner import Cell
from disentbench.store import RunStatus, cell_record, failure_record

try:  # submitit is an optional extra; the class below needs it only when the executor is used
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover - exercised when submitit is missing
    Checkpointable = object  # type: ignore[misc,assignment]


class CellTask(Checkpointable):
    """A picklable callable for one cell. On preemption/timeout submitit calls ``checkpoint``
    (inherited), which resubmits the same cell; the rerun resumes from the run's checkpoint."""

    def __call__(self, cell_json: dict[str, Any], threads: int = 0) -> dict[str, Any]:
        return execute_json(cell_json, threads)


@dataclass
class SlurmConfig:
    partition: str = ""
    time_min: int = 240
    gpus_per_node: int = 0
    cpus_per_task: int = 4
    mem_gb: int = 32
    array_parallelism: int = 32
    checkpoint_every: int = 500  # training steps between checkpoints (if the run sets none)
    folder: str = ""  # submitit logs; default <out>/.submitit
    cluster: str = ""  # "" = auto (Slurm where available); "local" runs the same path locally (tests)
    wait: bool = True  # wait for the jobs and report them; false = submit and return
    extra: dict[str, Any] = field(default_factory=dict)  # any other submitit parameter, e.g. slurm_qos


class SlurmExecutor:
    Config = SlurmConfig

    def __init__(self, config: SlurmConfig | None = None) -> None:
        self.config = config or SlurmConfig()

    def _executor(self, out: str):
        import submitit

        c = self.config
        folder = Path(c.folder or Path(out) / ".submitit") / "%j"
        executor = submitit.AutoExecutor(folder=str(folder), cluster=c.cluster or None)
        params: dict[str, Any] = dict(timeout_min=c.time_min, cpus_per_task=c.cpus_per_task, mem_gb=c.mem_gb,
                                      slurm_array_parallelism=c.array_parallelism, name="disentbench")
        if c.gpus_per_node:
            params["gpus_per_node"] = c.gpus_per_node
        if c.partition:
            params["slurm_partition"] = c.partition
        params.update(c.extra)
        if executor.cluster != "slurm":  # local/debug executors take only the generic parameters
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(**params)
        return executor

    def run(self, cells: list[Cell], report: Report | None = None) -> list[dict[str, Any]]:
        if not cells:
            return []
        c = self.config
        prepared = []
        for cell in cells:
            runtime = dict(cell.runtime)
            if not runtime.get("checkpoint_every"):
                runtime["checkpoint_every"] = c.checkpoint_every
            prepared.append(dataclasses.replace(cell, runtime=runtime, progress=False))
        executor = self._executor(cells[0].out)
        jobs = executor.map_array(CellTask(), [cell.to_json() for cell in prepared],
                                  [c.cpus_per_task] * len(prepared))
        print(f"disentbench: submitted {len(jobs)} job(s) through submitit ({executor.cluster}): "
              f"{', '.join(j.job_id for j in jobs[:5])}{' ...' if len(jobs) > 5 else ''}", flush=True)
        if not c.wait:
            return [cell_record(cell, RunStatus.SUBMITTED, job_id=job.job_id, _skipped=True)
                    for cell, job in zip(cells, jobs)]
        records = []
        for done, (cell, job) in enumerate(zip(cells, jobs), 1):
            try:
                record = job.result()
            except Exception as exc:  # the job failed outside the run's own error handling
                record = failure_record(cell, exc, f"slurm job {job.job_id}: {exc}")
            records.append(record)
            if report is not None:
                report(done, len(cells), cell, record)
        return records
