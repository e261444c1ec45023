"""The run store: one directory per (method, dataset, seed, config), written atomically.

Layout: ``<root>/<dataset>/<method>/seed<seed>-<config hash>/`` holding ``config.json``,
``env.json``, ``metrics.json``, ``train_log.jsonl``, ``state.pt``, ``transfer.png``,
``checkpoint.pt`` while training, and ``record.json`` (the versioned run record, written last).
Records are append-only: a failed attempt's record is kept under ``attempts/`` when retried.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
RECORD = "record.json"

#: Documented schema of ``record.json`` (version 1). Every key is always present.
RECORD_SCHEMA: dict[str, str] = {
    "schema_version": "int: version of this schema",
    "run_id": "str: <dataset>/<method>/seed<seed>-<config_hash>",
    "status": "str: 'finished' or 'failed'",
    "method": "str", "dataset": "str", "seed": "int",
    "supervision": "str: the method's supervision level",
    "config_hash": "str: sha256[:12] of the canonical JSON of 'config'",
    "config": "dict: method, dataset, metrics, train and eval settings, fully resolved",
    "metrics": "dict: metric name -> {status: ok|unavailable|error, values, directions, reason, notes, seconds}",
    "timings": "dict: train_seconds, eval_seconds, total_seconds, images_per_second, peak_memory_mb, steps",
    "env": "dict: python, platform, device, device_name, library versions, git commit",
    "versions": "dict: disentbench version and the version of every plugin distribution used",
    "artifacts": "dict: file names in the run directory (transfer_grid, state, train_log)",
    "method_info": "dict: what the method reported about its training (e.g. the latent dimensions an "
                   "unsupervised method assigned to class and content, final values of adaptive weights)",
    "data": "dict: the dataset's description of its protocol (splits, source checksums, preprocessing)",
    "checks": "dict: the harness's checks of the trained method before metrics; 'generator': the collapse "
              "check's evidence (spread and MSE ratios, thresholds, passed; evaluation.generator_check)",
    "error": "null or {type, message, traceback} when status is 'failed'",
    "started_at": "float: unix time", "finished_at": "float: unix time",
}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically, keeping insertion order (metric keys stay in their declared order)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


SECTIONS = ("runs", "paper-tables")  # the order of the generated parts of a leaderboard README.md


def write_section(path: Path, key: str, text: str) -> Path:
    """Replace generated part ``key`` of the markdown page ``path``, keeping the others.

    ``leaderboard/README.md`` holds two generated parts: the per-dataset run tables (``disentbench
    run`` / ``leaderboard``) and the index of paper tables (``--suite``). Each writer owns the part
    between its ``<!-- disentbench:KEY -->`` markers; text outside every marker is kept above them."""
    path = Path(path)
    try:
        old = path.read_text()
    except OSError:
        old = ""
    parts: dict[str, str] = {}
    preamble = old
    for name in SECTIONS:
        start, end = f"<!-- disentbench:{name} -->", f"<!-- /disentbench:{name} -->"
        if start in preamble and end in preamble.split(start, 1)[1]:
            before, rest = preamble.split(start, 1)
            body, after = rest.split(end, 1)
            parts[name] = body.strip("\n")
            preamble = before + after
    parts[key] = text.strip("\n")
    blocks = [preamble.strip("\n")] if preamble.strip() else []
    blocks += [f"<!-- disentbench:{n} -->\n{parts[n]}\n<!-- /disentbench:{n} -->" for n in SECTIONS if n in parts]
    atomic_write_bytes(path, ("\n\n".join(blocks) + "\n").encode())
    return path


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of any earlier schema version to the current one (none exist yet)."""
    version = record.get("schema_version", 0)
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"record {record.get('run_id')} has schema version {version}, newer than this disentbench "
            f"understands ({SCHEMA_VERSION}); upgrade disentbench"
        )
    if version == 0:  # records written before versioning carried no schema_version
        record = {**record, "schema_version": 1}
    return record


@dataclass
class RunDir:
    path: Path

    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    def read_record(self) -> dict[str, Any] | None:
        try:
            return upgrade(json.loads(self.record_path.read_text()))
        except FileNotFoundError:
            return None

    @property
    def finished(self) -> bool:
        record = self.read_record()
        return record is not None and record.get("status") == "finished"

    def archive_failed(self) -> None:
        """Keep a failed attempt's record (append-only history) before a retry."""
        record = self.read_record()
        if record is None:
            return
        attempts = self.path / "attempts"
        attempts.mkdir(exist_ok=True)
        n = len(list(attempts.glob("record-*.json")))
        os.replace(self.record_path, attempts / f"record-{n + 1}.json")

    def remove_partial_writes(self) -> None:
        """Delete temporary files (``.NAME.*.tmp``) that a killed writer left behind."""
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    def write(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def run_id(self, dataset: str, method: str, seed: int, config_hash: str) -> str:
        return f"{dataset}/{method}/seed{seed}-{config_hash}"

    def run_dir(self, run_id: str) -> RunDir:
        path = self.root / run_id
        path.mkdir(parents=True, exist_ok=True)
        return RunDir(path)

    def records(self) -> list[dict[str, Any]]:
        return read_records([self.root])


def read_records(roots: Iterable[Path]) -> list[dict[str, Any]]:
    """Every run record under ``roots`` (upgraded to the current schema), with its directory."""
    out = []
    for root in roots:
        for path in sorted(Path(root).glob(f"**/{RECORD}")):
            if "attempts" in path.parts:
                continue
            try:
                record = upgrade(json.loads(path.read_text()))
            except json.JSONDecodeError as exc:
                raise ValueError(f"run record {path} is not valid JSON ({exc}); delete that run directory") from None
            record["_dir"] = str(path.parent)
            out.append(record)
    return out


def now() -> float:
    return time.time()


class RunLock:
    """The ``lock`` file of a run directory: created exclusively, so that of several workers
    (processes, Ray tasks, Slurm jobs sharing the store) exactly one runs a cell. While held, a
    heartbeat thread touches it; a lock whose owner died (same host, process gone) or whose
    heartbeat stopped for ``stale_after`` seconds (any host: a killed or preempted node) is taken over."""

    def __init__(self, rd: RunDir, *, heartbeat: float = 30.0, stale_after: float = 300.0) -> None:
        self.path = rd.path / "lock"
        self.heartbeat, self.stale_after = heartbeat, stale_after
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stale(self) -> bool:
        try:
            host, pid = self.path.read_text().split()
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        except (OSError, ValueError):
            host, pid, age = "", "0", self.stale_after + 1
        if host == socket.gethostname() and not _pid_alive(int(pid)):
            return True
        return age > self.stale_after

    def acquire(self) -> bool:
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not self._stale():
                    return False
                self.path.unlink(missing_ok=True)  # its owner is gone: take over
                continue
            os.write(fd, me.encode())
            os.close(fd)
            self.held = True
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="disentbench-lock", daemon=True)
            self._thread.start()
            return True
        return False

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        if self.held:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
