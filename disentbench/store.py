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
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1
RECORD = "record.json"


class RunStatus(str, Enum):
    """Every status a run's answer can have. Only ``finished`` and ``failed`` are written to
    ``record.json``; the others are what a sweep reports for a cell it did not run here."""

    FINISHED = "finished"  # trained and evaluated
    FAILED = "failed"  # the record's 'error' says why
    RUNNING_ELSEWHERE = "running-elsewhere"  # another process holds the run's lock; skipped here
    FOLLOWER = "follower"  # a non-zero rank of a distributed run; rank 0 writes the record
    SUBMITTED = "submitted"  # queued on a cluster without waiting; the job writes the record

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

#: Documented schema of ``record.json`` (version 1). Every key is always present.
RECORD_SCHEMA: dict[str, str] = {
    "schema_version": "int: version of this schema",
    "run_id": "str: <dataset>/<method>/seed<seed>-<config_hash>",
    "status": "str: 'finished' or 'failed' (a sweep also answers 'running-elsewhere', 'follower' or "
              "'submitted' for a cell it did not run here; those are never written: RunStatus)",
    "method": "str", "dataset": "str", "seed": "int",
    "supervision": "str: the method's supervision level",
    "config_hash": "str: sha256[:12] of the canonical JSON of 'config'",
    "config": "dict: method, dataset, metrics, train and eval settings, fully resolved",
    "metrics": "dict: metric name -> {status: ok|unavailable|error, values, directions, reason, notes, seconds}",
    "timings": "dict: train_seconds, eval_seconds, total_seconds, images_per_second, images_seen (all stages), peak_memory_mb, steps",
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


def cell_record(cell: Any, status: RunStatus, **extra: Any) -> dict[str, Any]:
    """The short answer for a cell (anything with ``run_id``, ``method``, ``dataset``, ``seed``)
    that was not run to a full record here: skipped, submitted, or its process died."""
    return {"run_id": cell.run_id, "status": status, "method": cell.method, "dataset": cell.dataset,
            "seed": cell.seed, **extra}


def run_error(exc: BaseException, message: str | None = None, traceback: str = "") -> dict[str, Any]:
    """A record's ``error``: the exception's type, a message (``str(exc)`` unless given) and a traceback."""
    return {"type": type(exc).__name__, "message": str(exc) if message is None else message, "traceback": traceback}


def failure_record(cell: Any, exc: BaseException, message: str | None = None) -> dict[str, Any]:
    """The record of a cell whose worker, task or job died before the run could write its own."""
    return cell_record(cell, RunStatus.FAILED, error=run_error(exc, message))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    guard(path)  # a run directory's files are written only while this process still holds its lock
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


class CorruptFile(ValueError):
    """A run store file that cannot be used: not JSON, truncated, empty or of the wrong shape."""


class NewerSchema(ValueError):
    """A record written by a newer disentbench: valid, but not readable here (kept where it is)."""


def warn(message: str) -> None:
    """One ``warning:`` line on stderr (what the command line prints for problems it works around)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def quarantine(path: Path, why: str) -> Path | None:
    """Move a corrupt file aside as ``<name>.corrupt-<UTC time>`` (kept for inspection, ignored by
    every reader) and warn, naming it and saying why. Returns the new path (None if it could not be moved)."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        os.replace(path, dest)
    except FileNotFoundError:
        return None  # another process moved it first
    except OSError as exc:
        warn(f"{path} is unusable ({why}); it could not be moved aside ({exc}), so it is ignored")
        return None
    warn(f"{path} is unusable ({why}); moved it aside to {dest.name} and carrying on without it")
    return dest


def record_problem(record: Any) -> str | None:
    """Why ``record`` is not a usable run record (None when it is): the keys every reader relies on."""
    if not isinstance(record, dict):
        return f"a record is a JSON object, this is a {type(record).__name__}"
    if record.get("status") not in ("finished", "failed"):
        return f"status is {record.get('status')!r}, not 'finished' or 'failed'"
    for key, kind in (("run_id", str), ("method", str), ("dataset", str), ("seed", int)):
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            return f"{key!r} is {record.get(key)!r}, not a {kind.__name__}"
    if record["status"] == "finished":
        if not isinstance(record.get("config_hash"), str):
            return f"'config_hash' is {record.get('config_hash')!r}, not a str"
        metrics = record.get("metrics")
        if not isinstance(metrics, dict) or not all(
                isinstance(m, dict) and isinstance(m.get("directions", {}), dict)
                and isinstance(m.get("values", {}), dict) for m in metrics.values()):
            return "'metrics' is not a mapping of metric name to {status, values, directions}"
    return None


def load_record(path: Path) -> dict[str, Any]:
    """Read, upgrade and check one ``record.json``; raises :class:`CorruptFile` saying why it cannot be
    used, :class:`NewerSchema` for a newer disentbench's record, FileNotFoundError if absent."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise CorruptFile("it is a directory") from None
    if not raw.strip():
        raise CorruptFile("the file is empty")
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptFile(f"not valid JSON, truncated or corrupt: {exc}") from None
    problem = record_problem(record)
    if problem is None and record.get("schema_version", 0) > SCHEMA_VERSION:
        raise NewerSchema(f"{path} was written with record schema {record['schema_version']}, newer than this "
                          f"disentbench understands ({SCHEMA_VERSION}); upgrade disentbench to read it")
    if problem is not None:
        raise CorruptFile(f"not a run record: {problem}")
    return upgrade(record)


@dataclass
class RunDir:
    path: Path

    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    def read_record(self) -> dict[str, Any] | None:
        """The run's record, or None when there is none yet. A corrupt record is moved aside (with a
        warning), so the run is redone; a newer disentbench's record raises :class:`NewerSchema`."""
        try:
            return load_record(self.record_path)
        except FileNotFoundError:
            return None
        except CorruptFile as exc:
            quarantine(self.record_path, str(exc))
            return None

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


def read_records(roots: Iterable[Path]) -> list[dict[str, Any]]:
    """Every run record under ``roots`` (upgraded to the current schema), with its directory. A
    corrupt record is moved aside with a warning (its run is redone by the next sweep); a newer
    disentbench's record is left out with a warning."""
    out = []
    for root in roots:
        for path in sorted(Path(root).glob(f"**/{RECORD}")):
            if "attempts" in path.parts:
                continue
            try:
                record = load_record(path)
            except FileNotFoundError:
                continue  # moved aside or archived by a sweep while we listed
            except CorruptFile as exc:
                quarantine(path, str(exc))
                continue
            except NewerSchema as exc:
                warn(f"{exc}; left out")
                continue
            record["_dir"] = str(path.parent)
            out.append(record)
    return out


def now() -> float:
    return time.time()


class LockLost(RuntimeError):
    """This process no longer holds the lock of the run it is working on: another worker took it over
    (this one was paused or suspended past the stale limit). The cell stops without writing."""


#: run directory -> the lock this process holds on it: writes into the directory check it first
_HELD: dict[str, "RunLock"] = {}


def guard(path: Path) -> None:
    """Raise :class:`LockLost` if ``path`` lies in a run directory whose lock this process took and
    has since lost. Called before every write of a run directory (records, checkpoints, state)."""
    lock = _HELD.get(os.path.abspath(os.path.dirname(path)))
    if lock is not None:
        lock.check()


def _proc_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), so a reused pid is not taken for
    the lock's owner; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


class RunLock:
    """The ``lock`` file of a run directory, so that of several workers (processes, Ray tasks, Slurm
    jobs sharing the store) exactly one runs a cell.

    The lock holds ``{host, pid, start, token}`` and appears complete (a hard link of a written file,
    never empty). While held, a heartbeat thread touches it. It is stale when its owner is on this
    host and gone (pid dead, or reused by another process), or, for an owner on another host or an
    unreadable lock, when its heartbeat stopped ``stale_after`` seconds ago. A live owner on this
    host is never displaced. Taking over a stale lock is atomic: the taker creates ``lock.takeover``
    exclusively, checks the lock still holds what it judged stale and swaps in its own (os.replace),
    so of several processes finding it stale at once exactly one wins. :meth:`release` removes only
    this process's own lock; :meth:`check` (called before every write of the run directory, see
    :func:`guard`) raises :class:`LockLost` once another worker holds it."""

    TAKEOVER_STALE = 60.0  # seconds after which a takeover marker whose taker died is cleared

    def __init__(self, rd: RunDir, *, heartbeat: float = 30.0, stale_after: float = 300.0) -> None:
        self.path = rd.path / "lock"
        self.heartbeat, self.stale_after = heartbeat, stale_after
        self.held = False
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _content(self) -> bytes:
        pid = os.getpid()
        return json.dumps({"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid),
                           "token": self.token}).encode()

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any] | None:
        try:
            info = json.loads(raw)
            if isinstance(info, dict) and isinstance(info.get("pid"), int):
                return info
        except ValueError:
            pass
        parts = raw.decode(errors="replace").split()  # the older "host pid" form
        if len(parts) == 2 and parts[1].isdigit():
            return {"host": parts[0], "pid": int(parts[1]), "start": None, "token": None}
        return None

    def _read(self, path: Path | None = None) -> tuple[bytes, float] | None:
        """(content, mtime) of the lock, or None if there is none."""
        path = path or self.path
        try:
            with open(path, "rb") as f:
                return f.read(), os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            return None

    def owner(self) -> dict[str, Any] | None:
        """Who holds the lock now ({host, pid, start, token}), None if nobody or unreadable."""
        seen = self._read()
        return None if seen is None else self._parse(seen[0])

    def _stale(self, raw: bytes, mtime: float, stale_after: float | None = None) -> bool:
        stale_after = self.stale_after if stale_after is None else stale_after
        info = self._parse(raw)
        if info is not None and info.get("host") == socket.gethostname():
            pid = info["pid"]
            if not _pid_alive(pid):
                return True
            start = info.get("start")
            if start is not None and _proc_start(pid) not in (None, start):
                return True  # the pid now belongs to another process
            return False  # a live owner on this host: never displaced, however long it is paused
        # another host's owner, or an empty/unreadable lock (a writer of the older format that died
        # between creating and writing it, or one still writing): judged by the age of its heartbeat
        return time.time() - mtime > stale_after

    def _create(self, path: Path) -> bool:
        """Create ``path`` holding this process's content, atomically and exclusively."""
        tmp = path.with_name(f".{path.name}.{self.token}.locktmp")  # not a .tmp: remove_partial_writes keeps it
        with open(tmp, "wb") as f:
            f.write(self._content())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # appears whole or not at all; fails if the lock exists
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            os.write(fd, self._content())
            os.close(fd)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _take_over(self, seen: bytes) -> bool:
        """Replace the stale lock whose content was ``seen``, unless another process is doing so or
        it has changed since it was judged stale."""
        marker = self.path.with_name("lock.takeover")
        for attempt in range(2):
            if self._create(marker):
                break
            old = self._read(marker)
            if attempt or old is None or not self._stale(old[0], old[1], self.TAKEOVER_STALE):
                return False  # another process is taking over right now
            aside = marker.with_name(f".lock.takeover.{self.token}")
            try:  # a taker died between creating and removing its marker: clear it and try once more
                os.replace(marker, aside)
                aside.unlink()
            except OSError:
                return False
        try:
            now_seen = self._read()
            if now_seen is None:
                return self._create(self.path)  # released meanwhile
            if now_seen[0] != seen:
                return False  # someone else took it over or released and re-took it
            tmp = self.path.with_name(f".lock.{self.token}.locktmp")
            with open(tmp, "wb") as f:
                f.write(self._content())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # the lock never disappears, so no fresh creator can slip in
            return True
        finally:
            marker.unlink(missing_ok=True)

    def acquire(self) -> bool:
        for _ in range(3):
            if self._create(self.path):
                break
            seen = self._read()
            if seen is None:
                continue  # released while we looked: try again
            if not self._stale(*seen):
                return False
            if self._take_over(seen[0]):
                break
            return False
        else:
            return False
        self.held = True
        _HELD[os.path.abspath(self.path.parent)] = self
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="disentbench-lock", daemon=True)
        self._thread.start()
        return True

    def mine(self) -> bool:
        """Whether the lock file still holds this process's token."""
        info = self.owner()
        return info is not None and info.get("token") == self.token

    def check(self) -> None:
        """Raise :class:`LockLost` (naming the new owner) if another worker now holds this lock."""
        if not self.held or self.mine():
            return
        info = self.owner()
        who = f"{info.get('host')} pid {info.get('pid')}" if info else "nobody (the lock file is gone)"
        raise LockLost(f"run {self.path.parent}: this worker was paused past the stale limit "
                       f"({self.stale_after:.0f} s without a heartbeat) and its lock is now held by {who}; "
                       f"it stops this cell without writing and leaves it to that worker")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                if not self.mine():
                    return  # lost: check() reports it before the next write
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still this process's own."""
        if self.held:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            _HELD.pop(os.path.abspath(self.path.parent), None)
            if self.mine():
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
