"""Planning and running sweeps: methods × datasets × seeds, each cell one run directory.

:func:`plan_suite` plans every ``disentbench run``, a paper table's and a plain sweep's alike (a
plain suite is a table with implicit rows and columns): one :func:`plan` per (row, dataset, column
settings), which resolves every name and option before any work starts (so a typo fails in a second,
not after an hour of training) into a :class:`PlannedRun` per seed. :func:`execute` runs one
:class:`PlannedRun` in the current process; it is what every executor calls, locally or on a
cluster node.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import io
import json
import math
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from disentbench import __version__
from disentbench import config as cfg
from disentbench import env as envmod
from disentbench.config import PlanError
from disentbench.contracts import DataBundle, DataInfo, MetricResult, MetricUnavailable, Unavailable
from disentbench.download import downloads_allowed
from disentbench.paths import cache_root, data_root
from disentbench.plugins import load_registries
from disentbench.registry import Registries
from disentbench.store import (RECORD_SCHEMA, SCHEMA_VERSION, LockLost, NewerSchema, RunDir, RunLock, RunStatus,
                               RunStore, atomic_write_bytes, cell_record, failure_record, guard, now, quarantine,
                               run_error, warn)
from disentbench.suites import METHOD_INFO, PAPER_SCALE, Column, Row, Suite, SuitePlan, TableCellPlan, scale_settings
from disentbench.weights import WeightStore

@dataclass
class PlannedRun:
    """One run, fully resolved and JSON-able, so that any executor can ship it to any process."""

    method: str
    dataset: str
    seed: int
    run: cfg.RunConfig
    out: str
    data_dir: str | None = None
    require_metrics: bool = False
    progress: bool = True

    @property
    def config_hash(self) -> str:
        return self.run.config_hash()

    @property
    def run_id(self) -> str:
        return RunStore(Path(self.out)).run_id(self.dataset, self.method, self.seed, self.config_hash)

    def to_json(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "run": self.run.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PlannedRun":
        return cls(**{**data, "run": cfg.RunConfig.from_json(data["run"])})


#: The former name of :class:`PlannedRun`, kept for executor plugins that import it (an executor's
#: ``run(cells, report)`` receives a list of them).
Cell = PlannedRun


def plan(
    regs: Registries,
    *,
    methods: str | Iterable[str] = "all",
    datasets: str | Iterable[str] = "synth3d",
    metrics: str | Iterable[str] = "all",
    seeds: Iterable[int] = (0,),
    overrides: cfg.Overrides | None = None,
    out: str | Path = "runs",
    data_dir: str | Path | None = None,
    device: str | None = None,
    require_metrics: bool = False,
    progress: bool = True,
) -> list[PlannedRun]:
    """Resolve names and options into cells; raises :class:`PlanError` / :class:`~disentbench.registry.UnknownNameError`.
    ``device`` is ``--device`` (see :func:`~disentbench.config.run_device`: resolved here, once)."""
    overrides = overrides or {}
    method_specs = regs.methods.resolve(methods)
    dataset_specs = regs.datasets.resolve(datasets)
    metric_specs = regs.metrics.resolve(metrics)
    seeds = cfg.check_seeds(seeds) if seeds else []
    if not method_specs or not dataset_specs or not seeds:
        raise PlanError("nothing to run: give at least one method, one dataset and one seed")
    cfg.check_scopes(regs, overrides)
    train, evaluation = cfg.harness_options(overrides)
    device = cfg.run_device(device, overrides)
    train = dataclasses.replace(train, device=device)
    metric_configs = {m.name: cfg.config_of(m, overrides.get(m.name, {})) for m in metric_specs}
    dataset_configs = {d.name: cfg.config_of(d, overrides.get(d.name, {})) for d in dataset_specs}
    cells = []
    for d in dataset_specs:
        for m in method_specs:
            method_config, import_error = None, ""
            try:
                method_config, method_options = cfg.configure(m, overrides.get(m.name, {}))
            except cfg.ConfigError:
                raise
            except Exception as exc:  # the method's module fails to import: record it as a failed run
                method_options, import_error = dict(overrides.get(m.name, {})), f"{type(exc).__name__}: {exc}"
            run = cfg.RunConfig(method={"name": m.name, **method_options},
                                dataset={"name": d.name, **dataset_configs[d.name]}, metrics=metric_configs,
                                train=train, eval=evaluation, device=device, import_error=import_error,
                                method_config=method_config)
            for seed in seeds:
                cells.append(PlannedRun(m.name, d.name, seed, run, str(out),
                                        None if data_dir is None else str(data_dir), require_metrics, progress))
    return cells


def unavailable_methods(regs: Registries, names: Iterable[str] | None = None) -> dict[str, str]:
    """The methods (of ``names``; default: all registered) that declare a ``weights:NAME``
    requirement whose file is missing here, each with the reason. A sweep over "all" leaves them
    out instead of failing; a method named explicitly still runs, and fails saying what file to
    put where. A present but corrupt file does not count as missing (the run reports it)."""
    store = WeightStore(regs.weights)
    out: dict[str, str] = {}
    for name in regs.methods.names() if names is None else names:
        for req in regs.methods.get(name).requires:
            kind, _, arg = req.partition(":")
            if kind == "weights" and (arg not in regs.weights or store.status(arg) == "missing"):
                out[name] = (f"pretrained weights {arg!r} are not in {store.root}"
                             if arg in regs.weights else f"it needs weights {arg!r}, which no plugin registers")
                break
    return out


# -- executing one cell -----------------------------------------------------------------------

_DATA_MEMO: dict[str, DataBundle] = {}


def load_data(regs: Registries, name: str, dataset_config: dict[str, Any], data_dir: str | None,
              progress: bool) -> DataBundle:
    key = cfg.config_hash([name, dataset_config, data_dir])
    if key not in _DATA_MEMO:
        options = {k: v for k, v in dataset_config.items() if k != "name"}
        instance = regs.datasets.get(name).build(options)
        bundle = instance.load(data_root(data_dir), cache_root() / "datasets", progress=progress)
        _DATA_MEMO.clear()  # keep one dataset in memory per process
        _DATA_MEMO[key] = bundle
    return _DATA_MEMO[key]


def _finite(metric: str, key: str, x: Any) -> float:
    """A metric's value as a float; a non-finite one is an error of that metric, never a silent gap."""
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"metric {metric!r} returned {key!r} = {value}, which is not a finite number; "
                         "a metric that cannot be computed must raise MetricUnavailable with the reason")
    return value


def _check_requirements(requires: Iterable[str], data: DataBundle, regs: Registries, split: str = "test",
                        kinds: Iterable[str] | None = None) -> None:
    """Raise :class:`MetricUnavailable` (or ``WeightsUnavailable``) for the first unmet requirement;
    ``kinds`` restricts the check to those kinds ("factors", "weights", "package", "extra")."""
    for req in requires:
        kind, _, arg = req.partition(":")
        if kinds is not None and kind not in kinds:
            continue
        if req == "factors":
            if not data.splits[split].has_factors:
                raise MetricUnavailable(f"dataset {data.name!r} has no ground-truth content factors")
        elif kind == "weights":
            WeightStore(regs.weights).path(arg, download=False)  # raises WeightsUnavailable with instructions
        elif kind == "package":
            if importlib.util.find_spec(arg) is None:
                raise MetricUnavailable(
                    f"the Python package {arg!r} is not installed; install the disentbench extra that "
                    f"provides it (`pip install 'disentbench[metrics]'`, `[reid]` or `[pose]`; the README's "
                    f"metrics section says which, and which torch/torchvision pair to use)"
                )
        elif kind == "extra":
            if arg not in data.splits[split].extras:
                raise MetricUnavailable(f"dataset {data.name!r} has no per-image annotation {arg!r}")


def evaluate_metric(spec: Any, metric_config: dict[str, Any], ctx: Any, regs: Registries) -> dict[str, Any]:
    """One metric's entry in the run record: ok with values, unavailable with the reason, or error."""
    entry: dict[str, Any] = {"directions": dict(spec.keys), "values": {}, "reason": None, "notes": "", "seconds": 0.0}
    t0 = time.perf_counter()
    try:
        _check_requirements(spec.requires, ctx.data, regs, kinds=("package",))
        metric = spec.build(dict(metric_config))
        applies = getattr(metric, "applies", None)
        if applies is not None:  # "does not apply to this dataset" is the reason to give, before missing files
            applies(ctx)
        _check_requirements(spec.requires, ctx.data, regs, kinds=("factors", "weights", "extra"))
        result = metric.compute(ctx)
        if isinstance(result, MetricResult):
            values, entry["notes"] = dict(result.values), result.notes
        else:
            values = dict(result)
        unexpected = sorted(set(values) - set(spec.keys))
        if unexpected:
            raise ValueError(f"metric {spec.name!r} returned keys {unexpected} that its MetricSpec does not declare")
        entry["values"] = {k: _finite(spec.name, k, v) for k, v in values.items()}
        entry["status"] = "ok"
    except Unavailable as exc:
        entry["status"], entry["reason"] = "unavailable", str(exc)
    except Exception as exc:
        entry["status"], entry["reason"] = "error", f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc()
    entry["seconds"] = time.perf_counter() - t0
    return entry


def execute(cell: PlannedRun, regs: Registries | None = None) -> dict[str, Any]:
    """Run one cell unless it already finished; always returns its record (never raises for a
    failure of the method, dataset or metrics: those are recorded)."""
    from disentbench.training import dist_info

    regs = regs or load_registries()
    store = RunStore(Path(cell.out))
    rd = store.run_dir(cell.run_id)
    rank, world = dist_info()
    try:
        existing = rd.read_record()  # a corrupt record is moved aside (with a warning) and the cell redone
    except NewerSchema as exc:
        return {**failure_record(cell, exc), "_skipped": True}
    lock = RunLock(rd)
    if existing is not None and existing.get("status") == "finished":
        decision = "finished"
    elif rank == 0:
        decision = "run" if lock.acquire() else "running-elsewhere"
    else:
        decision = None
    if world > 1:  # every rank must take rank 0's decision, or the others would wait on it forever
        import torch.distributed as dist

        box = [decision]
        dist.broadcast_object_list(box, src=0)
        decision = box[0]
    if decision == "finished":
        return {**(existing or rd.read_record() or {}), "_skipped": True}
    if decision == "running-elsewhere":
        return cell_record(cell, RunStatus.RUNNING_ELSEWHERE, _skipped=True)
    if rank != 0:
        return _follow(cell, regs, rd)
    try:
        rd.remove_partial_writes()  # a killed writer's temporary files; we hold the lock, no one else writes
        if existing is not None:
            rd.archive_failed()
        return _execute_locked(cell, regs, rd)
    except LockLost as exc:  # paused past the stale limit: another worker runs this cell now
        warn(str(exc))
        return {"run_id": cell.run_id, "status": "lost", "method": cell.method, "dataset": cell.dataset,
                "seed": cell.seed, "_skipped": True, "reason": str(exc)}
    finally:
        lock.release()  # only if it is still ours


def record_failure(cell: PlannedRun, error_type: str, message: str) -> dict[str, Any]:
    """A failed record for a cell that could not record its own failure (its worker process died):
    written to the run directory, unless the run finished meanwhile or a live worker holds it."""
    record: dict[str, Any] = {key: None for key in RECORD_SCHEMA}
    record.update(schema_version=SCHEMA_VERSION, run_id=cell.run_id, status=RunStatus.FAILED, method=cell.method,
                  dataset=cell.dataset, seed=cell.seed, config_hash=cell.config_hash, config=cell.run.semantic(),
                  metrics={}, timings={}, artifacts={}, started_at=now(), finished_at=now(),
                  error={"type": error_type, "message": message, "traceback": ""})
    rd = RunStore(Path(cell.out)).run_dir(cell.run_id)
    lock = RunLock(rd)
    if lock.acquire():  # the dead worker's lock is stale: its pid is gone
        try:
            existing = rd.read_record()
            if existing is None or existing.get("status") != RunStatus.FINISHED:
                rd.archive_failed()
                rd.write("record.json", record)
        except (OSError, ValueError) as exc:
            warn(f"could not record the failure of {cell.run_id}: {exc}")
        finally:
            lock.release()
    return record


def _train_or_load(cell: PlannedRun, regs: Registries, rd: RunDir, data: DataBundle, device: Any,
                   *, leader: bool = True) -> tuple[Any, dict[str, Any]]:
    """Build the method under the cell's seed and train it (resuming from the run's checkpoint),
    or load its saved state when an earlier attempt trained it. Only the leader (rank 0 of a
    distributed run) writes files."""
    import torch

    from disentbench.training import dist_info

    options = cell.run.train
    method_options = {k: v for k, v in cell.run.method.items() if k != "name"}
    spec = regs.methods.get(cell.method)
    planned = cell.run.method_config  # built by plan() in this process; None when the run came as JSON

    def build() -> Any:
        torch.manual_seed(cell.seed)
        info = DataInfo.from_split(data.train, weights=WeightStore(regs.weights))
        # a copy: the seeds of a plan share one RunConfig, and a method may keep (and change) its config
        config = spec.configure(method_options) if planned is None else copy.deepcopy(planned)
        return spec.instantiate(config, info).to(device)

    method = build()
    state_path, summary_path = rd.path / "state.pt", rd.path / "train_summary.json"
    if leader and dist_info()[1] == 1 and not (state_path.exists() and summary_path.exists()):
        _adopt_training(cell, rd)
    summary = None
    if state_path.exists() and summary_path.exists():  # trained before; evaluation had failed
        summary = _load_trained(method, state_path, summary_path, leader)
        if summary is None:  # moved aside: train again, from a freshly built method
            method = build()
    if summary is None:
        from disentbench.training import TrainingDiverged

        try:
            result = method.fit(data.train, options, seed=cell.seed, checkpoint=rd.path / "checkpoint.pt",
                                progress=cell.progress and leader)
        except TrainingDiverged as exc:
            if leader and exc.log:  # keep the loss curve up to the divergence beside the failed record
                _write_log(rd.path / "train_log.jsonl", exc.log)
            raise
        summary = {"train_seconds": result.seconds, "images_per_second": result.images_per_second,
                   "images_seen": result.images, "steps": result.steps, "resumed_from_step": result.resumed_from_step,
                   "peak_memory_mb": envmod.peak_memory_mb(device), "method_info": result.info}
        if leader:
            guard(state_path)  # a worker that lost its lock while training writes nothing
            _write_log(rd.path / "train_log.jsonl", result.log)
            method.save(state_path)
            rd.write("train_summary.json", summary)
            (rd.path / "checkpoint.pt").unlink(missing_ok=True)
    method.eval()
    return method, summary


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def _load_trained(method: Any, state_path: Path, summary_path: Path, leader: bool) -> dict[str, Any] | None:
    """The training summary after loading the saved state into ``method``; None when either file is
    unusable (the leader moves it aside with a warning naming it, and the run trains again)."""
    try:
        summary = json.loads(summary_path.read_text())
        if not isinstance(summary, dict):
            raise ValueError(f"a JSON object was expected, found a {type(summary).__name__}")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        if leader:
            quarantine(summary_path, f"not a training summary: {_first_line(exc)}; the run trains again")
        return None
    try:
        method.load(state_path)
    except Exception as exc:  # empty, truncated, not a torch file, or not this method's parameters
        if leader:
            quarantine(state_path, f"cannot be loaded: {_first_line(exc)}; the run trains again")
        return None
    return summary


TRAINED_FILES = ("state.pt", "train_summary.json", "train_log.jsonl")


def training_key(config: dict[str, Any]) -> str:
    """What determines a trained model: the method, dataset and training settings of a run's
    config (not its metrics or evaluation settings)."""
    return cfg.config_hash({k: config.get(k) for k in ("method", "dataset", "train")})


def _adopt_training(cell: PlannedRun, rd: RunDir) -> None:
    """Reuse the trained state of a sibling run that differs only in metrics or evaluation
    settings (same method, dataset, training settings and seed): evaluating another metric, or a
    paper suite sharing a run with another, then costs no training. The summary says whose."""
    key = training_key(cell.run.semantic())
    for other in sorted(rd.path.parent.glob(f"seed{cell.seed}-*")):
        if other == rd.path or not all((other / name).is_file() for name in TRAINED_FILES[:2]):
            continue
        try:
            config = json.loads((other / "config.json").read_text())["config"]
        except (OSError, ValueError, KeyError):
            continue
        if training_key(config) != key:
            continue
        try:  # copy only what loads: a corrupt sibling is not spread to this run
            import torch

            if not isinstance(json.loads((other / "train_summary.json").read_text()), dict):
                raise ValueError("train_summary.json is not a JSON object")
            if not isinstance(torch.load(other / "state.pt", map_location="cpu", weights_only=True), dict):
                raise ValueError("state.pt is not a state dict")
        except Exception as exc:
            warn(f"not reusing the training of {other}: {_first_line(exc)}; this run trains itself")
            continue
        for name in TRAINED_FILES:
            if (other / name).is_file():
                guard(rd.path / name)
                shutil.copyfile(other / name, rd.path / f".{name}.tmp")
                os.replace(rd.path / f".{name}.tmp", rd.path / name)
        summary = json.loads((rd.path / "train_summary.json").read_text())
        summary.setdefault("trained_in", f"{cell.dataset}/{cell.method}/{other.name}")
        rd.write("train_summary.json", summary)
        return


def _follow(cell: PlannedRun, regs: Registries, rd: RunDir) -> dict[str, Any]:
    """A rank > 0 of a distributed run: train in step with rank 0 (which owns the run directory,
    evaluates and writes the record) and return."""
    import torch

    from disentbench.training import resolve_device

    device = resolve_device(cell.run.device)
    data = load_data(regs, cell.dataset, cell.run.dataset, cell.data_dir, False)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        _train_or_load(cell, regs, rd, data, device, leader=False)
    return cell_record(cell, RunStatus.FOLLOWER, _skipped=True)


def _execute_locked(cell: PlannedRun, regs: Registries, rd: RunDir) -> dict[str, Any]:
    import torch

    from disentbench.evaluation import EvalContext, GeneratorCollapsed, generator_check, transfer_grid
    from disentbench.training import resolve_device

    started = now()
    record: dict[str, Any] = {key: None for key in RECORD_SCHEMA}
    record.update(
        schema_version=SCHEMA_VERSION, run_id=cell.run_id, status=RunStatus.FAILED, method=cell.method,
        dataset=cell.dataset, seed=cell.seed, config_hash=cell.config_hash, config=cell.run.semantic(),
        metrics={}, timings={}, artifacts={}, started_at=started,
    )
    rd.write("config.json", {"config": record["config"], "config_hash": cell.config_hash, "seed": cell.seed,
                             "runtime": cell.run.runtime(), "cell": cell.to_json()})
    try:
        spec = regs.methods.get(cell.method)
        record["supervision"] = spec.supervision
        record["versions"] = _versions(regs, cell)
        device = resolve_device(cell.run.device)
        record["env"] = envmod.environment(device)
        rd.write("env.json", record["env"])
        if cell.run.import_error:
            raise ImportError(f"method {cell.method!r} could not be imported: {cell.run.import_error}")
        data = load_data(regs, cell.dataset, cell.run.dataset, cell.data_dir, cell.progress)
        record["data"] = data.info
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            method, summary = _train_or_load(cell, regs, rd, data, device)
            record["method_info"] = summary.pop("method_info", {})
            # the training's cost stays in the record even if evaluation then fails the run
            record["timings"] = {**summary, "device_name": record["env"]["device_name"]}
            record["artifacts"] = {"state": "state.pt", "train_log": "train_log.jsonl"}
            t_eval = time.perf_counter()
            eval_options = cell.run.eval
            grid = transfer_grid(method, data.test, size=eval_options.grid_size, seed=cell.seed, device=device)
            png = io.BytesIO()
            grid.save(png, format="PNG")
            atomic_write_bytes(rd.path / "transfer.png", png.getvalue())
            record["artifacts"]["transfer_grid"] = "transfer.png"
            # a collapsed generator fails the run with the evidence (the grid above shows it), like a
            # non-finite loss
            record["checks"] = {"generator": generator_check(method, data, eval_options, device=device)}
            if not record["checks"]["generator"]["passed"]:
                raise GeneratorCollapsed(f"{cell.method}'s generator collapsed: "
                                         + "; and ".join(record["checks"]["generator"]["failures"])
                                         + " — if it trained only a few steps it has not learned yet: train longer; "
                                         "if its loss spiked, retrain it with a stabler recipe (e.g. lower learning "
                                         "rates); eval.check_min_spread=0 and eval.check_max_mse=0 turn the check off")
            ctx = EvalContext(method, data, device=device, seed=cell.seed, options=eval_options,
                              cache_dir=cache_root() / "evaluators", weights=WeightStore(regs.weights),
                              progress=cell.progress)
            for name, metric_config in cell.run.metrics.items():
                record["metrics"][name] = evaluate_metric(regs.metrics.get(name), metric_config, ctx, regs)
            rd.write("metrics.json", record["metrics"])
            eval_seconds = time.perf_counter() - t_eval
        record["timings"] = {**summary, "eval_seconds": eval_seconds, "total_seconds": now() - started,
                             "device_name": record["env"]["device_name"]}
        errors = [n for n, m in record["metrics"].items() if m["status"] == "error"]
        missing = [n for n, m in record["metrics"].items() if m["status"] == "unavailable"]
        if errors:
            raise RuntimeError(f"metric(s) {', '.join(errors)} raised: " + "; ".join(
                f"{n}: {record['metrics'][n]['reason']}" for n in errors))
        if missing and cell.require_metrics:
            raise RuntimeError("--require-metrics: unavailable metric(s): " + "; ".join(
                f"{n}: {record['metrics'][n]['reason']}" for n in missing))
        record["status"] = RunStatus.FINISHED
    except LockLost:
        raise  # another worker owns the run now: record nothing
    except Exception as exc:
        record["status"] = RunStatus.FAILED
        record["error"] = run_error(exc, traceback=traceback.format_exc())
    record["finished_at"] = now()
    rd.write("record.json", record)
    return record


def _write_log(path: Path, log: list[dict[str, Any]]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(row) + "\n" for row in log).encode())


def _versions(regs: Registries, cell: PlannedRun) -> dict[str, Any]:
    plugins = {}
    for attr, name in (("methods", cell.method), ("datasets", cell.dataset)):
        info = regs.plugin_of(attr, name)
        plugins[f"{attr[:-1]}:{name}"] = {"plugin": info.name if info else None,
                                          "distribution": info.distribution if info else None,
                                          "version": info.version if info else None}
    for name in cell.run.metrics:
        info = regs.plugin_of("metrics", name)
        plugins[f"metric:{name}"] = {"plugin": info.name if info else None,
                                     "distribution": info.distribution if info else None,
                                     "version": info.version if info else None}
    return {"disentbench": __version__, "plugins": plugins}


# -- sweeps ----------------------------------------------------------------------------------

def run_sweep(cells: list[PlannedRun], regs: Registries | None = None,
              report: Callable[[int, int, PlannedRun, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run cells one after another in this process (the ``local`` executor's default path)."""
    regs = regs or load_registries()
    records = []
    for k, cell in enumerate(cells):
        record = execute(cell, regs)
        records.append(record)
        if report is not None:
            report(k + 1, len(cells), cell, record)
    return records


# -- planning the runs of a paper suite ------------------------------------------------------

def dataset_missing(regs: Any, name: str, dataset_config: dict[str, Any], data_dir: str | Path | None) -> str:
    """Why ``name`` cannot be loaded here without a download that cannot happen ("" if it can):
    its files are not under the data root and it is not downloadable, or downloads are off."""
    options = {k: v for k, v in dataset_config.items() if k != "name"}
    instance = regs.datasets.get(name).build(options)
    locate = getattr(instance, "locate", None)
    if locate is None:  # generated, or loaded some other way: assume it is here
        return ""
    try:
        locate(data_root(data_dir))
    except Unavailable as exc:
        downloadable = bool(getattr(instance, "downloads", lambda: [])())
        if downloadable and downloads_allowed():
            return ""  # the run fetches it
        return str(exc)
    return ""


def plan_suite(suite: Suite, regs: Any, *, scale: str = PAPER_SCALE, overrides: cfg.Overrides | None = None,
               seeds: list[int] | None = None, out: str | Path = "runs", data_dir: str | Path | None = None,
               device: str | None = None, require_metrics: bool = False, progress: bool = True,
               stand_ins: bool = False, check_data: bool = True) -> SuitePlan:
    """Every (row, column) of a suite as planned runs: the one planner of every ``disentbench run``.
    Columns of one dataset with the same settings share a run (one run per row × dataset × seed
    measures all their metrics). A plain suite is planned as its implicit table (:meth:`Suite.table`:
    a row per method, a column per dataset and metric), its runs in the order of its datasets, then
    methods, then seeds. In a paper table, reference rows and methods whose weights are missing are
    not run, and say why, and a dataset missing here is noted on its cells (``check_data``); a plain
    suite runs what it names, and a run that cannot load its data or weights fails saying why."""
    base, scale_seeds = scale_settings(suite, scale, regs)
    rows, columns = suite.table(regs)
    seeds = list(seeds or scale_seeds)
    if not rows or not columns or not seeds:
        raise PlanError("nothing to run: give at least one method, one dataset and one seed")
    cli = overrides or {}
    paper = suite.is_paper_table
    missing_weights = unavailable_methods(regs, sorted({r.method for r in rows if r.method})) if paper else {}
    cells: dict[tuple[str, str], TableCellPlan] = {}
    data_missing: dict[str, str] = {}
    memo: dict[str, list[Any]] = {}

    def runs_for(row: Row, dataset: str, col: Column, metric_refs: list[str]) -> list[Any]:
        layered = cfg.merge(base, col.settings, {row.method: row.settings} if row.settings else {}, cli)
        metric_names = [n for n in dict.fromkeys(ref.split(".")[0] for ref in metric_refs) if n != METHOD_INFO]
        if paper:
            metric_names.sort()
        key = json.dumps([row.key, dataset, col.settings, metric_names], sort_keys=True, default=str)
        if key not in memo:
            memo[key] = plan(regs, methods=[row.method], datasets=[dataset], metrics=metric_names, seeds=seeds,
                             overrides=layered, out=out, data_dir=data_dir, device=device,
                             require_metrics=require_metrics, progress=progress)
        return memo[key]

    # the metrics each (row, dataset, column settings) run computes: those of every column it serves
    groups: dict[str, list[str]] = {}
    for row in rows:
        for col in columns:
            for ds in filter(None, (col.dataset, col.stand_in)) if not col.unavailable else ():
                gkey = json.dumps([row.key, ds, col.settings], sort_keys=True, default=str)
                groups.setdefault(gkey, []).extend(filter(None, (row.metric_for(col), col.fallback)))
    # a paper table's runs go row by row; a plain suite's dataset by dataset (one dataset in memory at a time)
    pairs = [(r, c) for r in rows for c in columns] if paper else [(r, c) for c in columns for r in rows]
    for row, col in pairs:
        tc = TableCellPlan(row.key, col.key)
        cells[(row.key, col.key)] = tc
        if row.reference:
            tc.skipped = f"not run in disentbench: {row.reference}"
            continue
        if col.unavailable:
            tc.skipped = f"not measurable in disentbench: {col.unavailable}"
            continue
        if row.method in missing_weights:
            tc.skipped = f"method {row.method!r} cannot run here: {missing_weights[row.method]}"
            continue
        for ds, target in ((col.dataset, "runs"), (col.stand_in, "stand_in_runs")):
            if not ds:
                continue
            refs = groups[json.dumps([row.key, ds, col.settings], sort_keys=True, default=str)]
            setattr(tc, target, runs_for(row, ds, col, refs))
        if paper and check_data and tc.runs:
            ds_config = tc.runs[0].run.dataset
            dkey = json.dumps([col.dataset, ds_config], sort_keys=True, default=str)
            if dkey not in data_missing:
                data_missing[dkey] = dataset_missing(regs, col.dataset, ds_config, data_dir)
            tc.data_missing = data_missing[dkey]
    return SuitePlan(suite, scale, seeds, cells, stand_ins, dict(cli), base)
