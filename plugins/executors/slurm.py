"""The Slurm executor, through submitit: the cells become one job array.

Each task runs :func:`disentbench.executors.execute_json`. Training checkpoints every
``checkpoint_every`` steps into the run directory; when Slurm preempts a task or its time runs
out, submitit's checkpointing requeues it and the rerun resumes from the last checkpoint (the run
store's lock heartbeat lets the requeued task take over the dead one's lock). ``wait = false``
submits and returns; `disentbench leaderboard` later renders whatever finished.

Before submitting, the request is checked against the partition (``sinfo``/``scontrol``): one that
no node of it can ever satisfy fails at once, and options left at 0 take values that fit it. While
waiting, each cell's state and pending reason (``squeue``) are printed whenever they change."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from disentbench.config import ConfigError
from disentbench.executors import Report, execute_json
from disentbench.runner import PlannedRun
from disentbench.store import RunStatus, cell_record, failure_record

try:  # submitit is an optional extra; the class below needs it only when the executor is used
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover - exercised when submitit is missing
    Checkpointable = object  # type: ignore[misc,assignment]

# Pending reasons that no amount of waiting resolves: the partition cannot hold the request.
NEVER_RUNS = {"PartitionConfig", "PartitionTimeLimit", "PartitionNodeLimit", "BadConstraints"}
DEFAULT_CPUS, DEFAULT_MEM_MB, DEFAULT_TIME_MIN = 4, 32 * 1024, 240


class CellTask(Checkpointable):
    """A picklable callable for one cell. On preemption/timeout submitit calls ``checkpoint``
    (inherited), which resubmits the same cell; the rerun resumes from the run's checkpoint."""

    def __call__(self, cell_json: dict[str, Any], threads: int = 0) -> dict[str, Any]:
        _requeue_ignoring_sigterm()
        return execute_json(cell_json, threads)


def _requeue_ignoring_sigterm() -> None:
    """On the preemption signal submitit runs ``scontrol requeue`` from this process; the requeue
    itself sends SIGTERM to every process of the job, that ``scontrol`` included, and when the
    signal wins the race the requeue counts as failed and the cell is recorded failed (seen on a
    real Slurm). Run it with SIGTERM ignored (the disposition survives exec)."""
    import signal

    try:
        from submitit import JobEnvironment

        handler = signal.getsignal(JobEnvironment._usr_sig())
    except (ImportError, AttributeError, RuntimeError, ValueError):
        return
    env = getattr(getattr(handler, "__self__", None), "env", None)
    if env is None or not hasattr(env, "_requeue") or not hasattr(env, "job_id"):
        return  # not running under submitit's Slurm handler (local executor, tests)

    def requeue(countdown: int) -> None:
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            subprocess.check_call(["scontrol", "requeue", env.job_id], timeout=60)
        finally:
            signal.signal(signal.SIGTERM, previous)
        print(f"disentbench: requeued slurm job {env.job_id} ({countdown} timeouts left)", flush=True)

    env._requeue = requeue


@dataclass
class SlurmConfig:
    partition: str = ""  # "" = the cluster's default partition
    time_min: int = 0  # 0 = min(240, the partition's MaxTime)
    gpus_per_node: int = 0
    cpus_per_task: int = 0  # 0 = min(4, the CPUs of the partition's largest node)
    mem_gb: int = 0  # 0 = that node's memory shared between the tasks it can hold, at most 32 GB
    array_parallelism: int = 32
    checkpoint_every: int = 500  # training steps between checkpoints (if the run sets none)
    folder: str = ""  # submitit logs; default <out>/.submitit
    cluster: str = ""  # "" = auto (Slurm where available); "local" runs the same path locally (tests)
    wait: bool = True  # wait for the jobs and report them; false = submit and return
    poll_s: float = 10.0  # seconds between squeue calls while waiting
    extra: dict[str, Any] = field(default_factory=dict)  # any other submitit parameter, e.g. slurm_qos


@dataclass
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: int


@dataclass
class Partition:
    """What Slurm says a partition can hold (``scontrol show partition``, ``sinfo -N``)."""
    name: str
    max_time_min: int | None  # None = unlimited
    nodes: list[Node]
    max_cpus_per_node: int | None = None
    max_mem_per_node_mb: int | None = None

    def cpus(self, node: Node) -> int:
        return min(node.cpus, self.max_cpus_per_node or node.cpus)

    def mem_mb(self, node: Node) -> int:
        return min(node.mem_mb, self.max_mem_per_node_mb or node.mem_mb)

    def limits(self) -> str:
        cpus = max(self.cpus(n) for n in self.nodes)
        mem = max(self.mem_mb(n) for n in self.nodes)
        gpus = max(n.gpus for n in self.nodes)
        time_limit = "no time limit" if self.max_time_min is None else f"MaxTime {self.max_time_min} min"
        return (f"{len(self.nodes)} node(s) with at most {cpus} CPUs, {mem / 1024:.1f} GB memory and "
                f"{gpus} GPUs each, {time_limit}")


def parse_minutes(text: str) -> int | None:
    """Slurm's time format ([days-]hours:minutes:seconds, minutes:seconds, minutes) in whole minutes;
    None for UNLIMITED/INFINITE."""
    text = text.strip()
    if text.upper() in {"UNLIMITED", "INFINITE", "NONE", ""}:
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, (minutes, seconds) = 0, parts
    else:
        hours, minutes, seconds = 0, parts[0], 0
    if days and len(parts) < 3:  # days-hours[:minutes]
        hours, minutes, seconds = parts[0], (parts[1] if len(parts) > 1 else 0), 0
    return (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)


def _slurm(*args: str) -> str:
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"slurm: `{' '.join(args)}` failed ({exc}); is Slurm reachable from here (sinfo)?") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"slurm: `{' '.join(args)}` failed: {last}; is Slurm reachable from here (sinfo)?")
    return proc.stdout


def _gpus(gres: str) -> int:
    """GPUs in a node's Gres field, e.g. ``gpu:4``, ``gpu:a100:2(S:0-1),gpu:v100:1``."""
    total = 0
    for item in gres.split(","):
        m = re.match(r"gpu(?::[^:(]+)?:(\d+)", item.strip())
        if m:
            total += int(m.group(1))
    return total


def query_partition(name: str = "") -> Partition:
    """Ask Slurm what the partition ``name`` (default: the cluster's default partition) can hold."""
    fields_of = [dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
                 for line in _slurm("scontrol", "show", "partition", "-o").splitlines() if line.strip()]
    if not fields_of:
        raise ConfigError("slurm: the cluster has no partitions (scontrol show partition); ask its admins")
    known = [f.get("PartitionName", "") for f in fields_of]
    if name:
        match = [f for f in fields_of if f.get("PartitionName") == name]
        if not match:
            raise ConfigError(f"slurm: unknown slurm.partition={name!r}; the cluster has: {', '.join(known)}")
    else:
        match = [f for f in fields_of if f.get("Default") == "YES"]
        if not match:
            raise ConfigError(f"slurm: the cluster has no default partition; set slurm.partition to one of: "
                              f"{', '.join(known)}")
    info = match[0]
    part = info["PartitionName"]
    nodes = []
    for line in _slurm("sinfo", "-h", "-N", "-p", part, "-o", "%N|%c|%m|%G").splitlines():
        if line.count("|") != 3:
            continue
        node, cpus, mem, gres = line.split("|")
        nodes.append(Node(node, int(cpus.rstrip("+")), int(mem.rstrip("+")), _gpus(gres)))
    if not nodes:
        raise ConfigError(f"slurm: partition {part!r} has no nodes (sinfo -p {part}); choose another slurm.partition")

    def limit(key: str) -> int | None:
        value = info.get(key, "UNLIMITED")
        return int(value) if value.isdigit() and int(value) > 0 else None

    return Partition(part, parse_minutes(info.get("MaxTime", "UNLIMITED")), nodes,
                     limit("MaxCPUsPerNode"), limit("MaxMemPerNode"))


@dataclass
class Request:
    cpus: int
    mem_mb: int
    gpus: int
    time_min: int

    def __str__(self) -> str:
        return (f"cpus_per_task={self.cpus}, mem={self.mem_mb / 1024:.1f} GB, gpus_per_node={self.gpus}, "
                f"time_min={self.time_min}")


def fit_request(config: SlurmConfig, partition: Partition) -> Request:
    """The request from ``config``, with options left at 0 chosen to fit ``partition``; a request
    that no node of the partition can ever satisfy raises one line naming it and the limits."""
    best = max(partition.nodes, key=lambda n: (n.gpus >= config.gpus_per_node, partition.cpus(n), n.mem_mb))
    cpus = config.cpus_per_task or min(DEFAULT_CPUS, partition.cpus(best))
    if config.mem_gb:
        mem_mb = config.mem_gb * 1024
    else:  # the node's memory divided between the tasks of this size it can hold
        mem_mb = min(DEFAULT_MEM_MB, partition.mem_mb(best) * min(cpus, best.cpus) // max(1, best.cpus))
    time_min = config.time_min or min(DEFAULT_TIME_MIN, partition.max_time_min or DEFAULT_TIME_MIN)
    request = Request(cpus, max(1, mem_mb), config.gpus_per_node, time_min)
    fits = [n for n in partition.nodes if request.cpus <= partition.cpus(n)
            and request.mem_mb <= partition.mem_mb(n) and request.gpus <= n.gpus]
    too_long = partition.max_time_min is not None and request.time_min > partition.max_time_min
    if not fits or too_long:
        over = []
        if not any(request.cpus <= partition.cpus(n) for n in partition.nodes):
            over.append("slurm.cpus_per_task")
        if not any(request.mem_mb <= partition.mem_mb(n) for n in partition.nodes):
            over.append("slurm.mem_gb")
        if not any(request.gpus <= n.gpus for n in partition.nodes):
            over.append("slurm.gpus_per_node")
        if too_long:
            over.append("slurm.time_min")
        what = " or ".join(over) or "the request (no single node has all of it)"
        raise ConfigError(f"slurm: the request {request} can never run in partition {partition.name!r} "
                          f"({partition.limits()}): lower {what}, or choose another slurm.partition")
    return request


class SlurmExecutor:
    Config = SlurmConfig

    def __init__(self, config: SlurmConfig | None = None) -> None:
        self.config = config or SlurmConfig()

    def _executor(self, out: str):
        """The submitit executor with the request set; returns it and the CPUs each task uses."""
        import os

        import submitit

        c = self.config
        folder = Path(c.folder or Path(out) / ".submitit") / "%j"
        executor = submitit.AutoExecutor(folder=str(folder), cluster=c.cluster or None)
        params: dict[str, Any] = dict(slurm_array_parallelism=c.array_parallelism, name="disentbench")
        if executor.cluster == "slurm":
            request = fit_request(c, query_partition(c.partition))
            params.update(timeout_min=request.time_min, cpus_per_task=request.cpus, slurm_mem=f"{request.mem_mb}M")
            if request.gpus:
                params["gpus_per_node"] = request.gpus
            cpus = request.cpus
        else:  # local/debug executors take only the generic parameters
            cpus = c.cpus_per_task or min(DEFAULT_CPUS, os.cpu_count() or 1)
            params.update(timeout_min=c.time_min or DEFAULT_TIME_MIN, cpus_per_task=cpus)
            if c.mem_gb:
                params["mem_gb"] = c.mem_gb
            if c.gpus_per_node:
                params["gpus_per_node"] = c.gpus_per_node
        if c.partition:
            params["slurm_partition"] = c.partition
        params.update(c.extra)
        if executor.cluster != "slurm":
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(**params)
        return executor, cpus

    def run(self, cells: list[PlannedRun], report: Report | None = None) -> list[dict[str, Any]]:
        if not cells:
            return []
        c = self.config
        prepared = []
        for cell in cells:
            run = cell.run
            if not run.train.checkpoint_every:
                run = dataclasses.replace(run, train=dataclasses.replace(run.train, checkpoint_every=c.checkpoint_every))
            prepared.append(dataclasses.replace(cell, run=run, progress=False))
        executor, cpus = self._executor(cells[0].out)
        try:
            jobs = executor.map_array(CellTask(), [cell.to_json() for cell in prepared], [cpus] * len(prepared))
        except Exception as exc:  # sbatch refused the array (submitit raises with sbatch's output)
            last = ([ln for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__])[-1]
            raise ConfigError(f"slurm: submitting the job array failed: {last.strip()}") from None
        print(f"disentbench: submitted {len(jobs)} job(s) through submitit ({executor.cluster}): "
              f"{', '.join(j.job_id for j in jobs[:5])}{' ...' if len(jobs) > 5 else ''}", flush=True)
        if not c.wait:
            return [cell_record(cell, RunStatus.SUBMITTED, job_id=job.job_id, _skipped=True)
                    for cell, job in zip(cells, jobs)]
        if executor.cluster == "slurm":
            return self._watch(cells, jobs, report)
        records = []
        for done, (cell, job) in enumerate(zip(cells, jobs), 1):
            records.append(_record(cell, job))
            if report is not None:
                report(done, len(cells), cell, records[-1])
        return records

    def _watch(self, cells: list[PlannedRun], jobs: list[Any], report: Report | None) -> list[dict[str, Any]]:
        """Wait for the array, printing each cell's state and pending reason when it changes, and
        failing at once the cells Slurm will never start (or that left the queue without a result)."""
        records: list[dict[str, Any] | None] = [None] * len(cells)
        shown: dict[int, str] = {}
        missing: dict[int, int] = {}
        done = 0

        def finish(i: int, record: dict[str, Any]) -> None:
            nonlocal done
            records[i], done = record, done + 1
            if report is not None:
                report(done, len(cells), cells[i], record)

        while True:
            for i, job in enumerate(jobs):
                if records[i] is None and job.paths.result_pickle.exists():
                    finish(i, _record(cells[i], job))
            waiting = [i for i, r in enumerate(records) if r is None]
            if not waiting:
                return records  # type: ignore[return-value]
            states = squeue({jobs[i].job_id.split("_")[0] for i in waiting})
            for i in waiting:
                cell, job = cells[i], jobs[i]
                if states is None:  # squeue failed this time (controller busy): ask again later
                    continue
                if job.job_id not in states:
                    missing[i] = missing.get(i, 0) + 1
                    if missing[i] >= 3 and not job.paths.result_pickle.exists():
                        finish(i, _failed(cell, f"slurm job {job.job_id} left the queue without a result; "
                                                f"see {job.paths.stderr}: {_last_line(job.paths.stderr)}"))
                    continue
                missing.pop(i, None)
                state, reason = states[job.job_id]
                line = state if reason in ("", "None") else f"{state} ({reason})"
                if shown.get(i) != line:
                    shown[i] = line
                    shown_state = state.lower() if state != "PENDING" or line == state else f"pending: {reason}"
                    print(f"disentbench: {cell.method} on {cell.dataset} seed {cell.seed} (job {job.job_id}): "
                          f"{shown_state}", flush=True)
                if state == "PENDING" and reason in NEVER_RUNS:
                    subprocess.run(["scancel", job.job_id], capture_output=True, timeout=60)
                    finish(i, _failed(cell, f"slurm job {job.job_id} can never start (pending reason {reason}): "
                                            "lower slurm.cpus_per_task/mem_gb/gpus_per_node/time_min or "
                                            "choose another slurm.partition"))
            time.sleep(self.config.poll_s)


def squeue(array_ids: set[str]) -> dict[str, tuple[str, str]] | None:
    """State and reason of every task of the given arrays, by task id (``123_4``); None if squeue failed."""
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(sorted(array_ids)), "-o", "%i|%T|%r"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        # a finished array is "Invalid job id" to squeue once it has left the controller's memory
        return {} if "Invalid job id" in proc.stderr else None
    states = {}
    for line in proc.stdout.splitlines():
        if line.count("|") == 2:
            job_id, state, reason = line.split("|")
            states[job_id.strip()] = (state.strip(), reason.strip())
    return states


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


class SlurmJobError(RuntimeError):
    """A Slurm job that ended without its run's record (cancelled, never started, lost)."""


def _failed(cell: PlannedRun, message: str) -> dict[str, Any]:
    return failure_record(cell, SlurmJobError(message))


def _record(cell: PlannedRun, job: Any) -> dict[str, Any]:
    try:
        return job.result()
    except Exception as exc:  # the job failed outside the run's own error handling
        return failure_record(cell, exc, f"slurm job {job.job_id}: {exc}")
