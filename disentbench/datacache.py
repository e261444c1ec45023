"""The on-disk array cache of dataset plugins that read real files: preprocessed uint8 arrays
(memory-mappable ``.npy`` under a key of what they were made from) and remembered source checksums
(so a cached load does not re-read gigabytes). Cropping and resizing are in :mod:`disentbench.images`.

A cache entry is a directory ``<root>/<name>-<key>/`` holding one ``.npy`` per array and a
``meta.json`` written last; it is built in a temporary directory and renamed into place under a
file lock (:func:`publish`), so a crash or a failed check never leaves a partial entry that a later
load would use, and parallel workers building the same entry (``--jobs N`` on a cold cache) all
succeed: the first to finish publishes, the others use its copy.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from disentbench.download import ChecksumError, file_digests

CACHE_FORMAT = 1  # bump when the layout of a cache entry changes


def cache_key(*parts: Any) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON of ``parts`` (sources + preprocessing)."""
    payload = json.dumps([CACHE_FORMAT, *parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class CachedArrays:
    """A loaded cache entry: memory-mapped arrays by name and the metadata saved with them."""

    path: Path
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())


@dataclass
class ArrayWriter:
    """Fills one cache entry under construction: :meth:`allocate` a large array and write into it
    in place (it lives on disk, not in memory), or :meth:`save` a small one; set :attr:`meta`."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)

    def allocate(self, name: str, shape: Sequence[int], dtype: Any = np.uint8) -> np.ndarray:
        self._add(name)
        return np.lib.format.open_memmap(self.path / f"{name}.npy", mode="w+", dtype=dtype, shape=tuple(shape))

    def save(self, name: str, array: np.ndarray) -> None:
        self._add(name)
        np.save(self.path / f"{name}.npy", np.asarray(array), allow_pickle=False)

    def _add(self, name: str) -> None:
        if not name or "/" in name or name in self.names:
            raise ValueError(f"bad or repeated cache array name {name!r}")
        self.names.append(name)


class ArrayCache:
    """One cache entry, ``<root>/<name>-<key>``: :meth:`exists`, :meth:`load`, :meth:`build`."""

    def __init__(self, root: Path, name: str, key: str) -> None:
        self.path = Path(root) / f"{name}-{key}"

    def exists(self) -> bool:
        return (self.path / "meta.json").is_file()

    def load(self) -> CachedArrays:
        """Memory-map every array (milliseconds, whatever the size). Copy-on-write: the arrays are
        writable like ordinary ones (torch.from_numpy accepts them), but writes stay in this
        process and never reach the cache files."""
        meta = json.loads((self.path / "meta.json").read_text())
        arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="c", allow_pickle=False)
                  for name in meta["arrays"]}
        return CachedArrays(self.path, arrays, meta["meta"])

    @contextlib.contextmanager
    def build(self) -> Iterator[ArrayWriter]:
        """Yield a writer on a temporary directory; on a clean exit flush it, write ``meta.json``
        and rename it into place. On an exception nothing is kept. If another process finished
        the same entry first, its copy is kept and ours discarded."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            writer = ArrayWriter(tmp)
            yield writer
            (tmp / "meta.json").write_text(json.dumps({"arrays": writer.names, "meta": writer.meta},
                                                      indent=1, default=_json_default))
            _fsync_dir(tmp)
            publish(tmp, self.path, "meta.json")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp: Path, dest: Path, complete: str) -> bool:
    """Rename the finished directory ``tmp`` to ``dest`` unless another process published a complete
    ``dest`` (one holding the file ``complete``) first, in which case ``tmp`` is discarded. Under a
    file lock (``.<dest name>.lock`` beside it: hidden, so a glob for caches never finds it), so concurrent publishers never see or remove each other's half; an
    incomplete ``dest`` left by a crash is moved aside and removed. Returns whether ours was used."""
    from filelock import FileLock

    dest = Path(dest)
    with FileLock(str(dest.with_name(f".{dest.name}.lock"))):
        if (dest / complete).is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        if dest.exists():
            aside = dest.with_name(f"{dest.name}.incomplete-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(dest, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.replace(tmp, dest)
        return True


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _fsync_dir(path: Path) -> None:
    """Flush every file of ``path`` to disk before the entry is published."""
    for f in path.iterdir():
        with open(f, "rb+") as handle:
            os.fsync(handle.fileno())


class HashStamps:
    """Checksums of source files remembered by (path, size, mtime) in a small JSON file, so a file
    is read and hashed once and re-hashed only when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._data: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._data = {}
        self._dirty = False
        self._read_now: set[str] = set()  # files this instance has hashed: already fresh

    def digests(self, file: Path, algorithms: Sequence[str] = ("sha256",), *, progress: bool = False,
                fresh: bool = False) -> dict[str, str]:
        """The file's digests: remembered while its size and modification time are unchanged, or
        (``fresh``) read again. A fresh read that differs from what was remembered for the same
        size and time means the file was corrupted in place: :class:`ChecksumError`, and the file
        stays refused (even by later remembered checks) until it is replaced."""
        file = Path(file)
        st = file.stat()
        key = str(file.resolve())
        entry = self._data.get(key)
        same = bool(entry) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns
        reread = fresh and same and key not in self._read_now  # (a file hashed by this instance is fresh)
        if same and entry.get("changed_to") and not reread:
            raise ChecksumError(self._changed(file, entry))
        if reread:
            self._read_now.add(key)
            wanted = sorted(set(algorithms) | {a for a in ("sha256", "md5") if a in entry})
            actual = file_digests(file, wanted, progress=progress)
            if any(entry.get(a) not in (None, actual[a]) for a in wanted):
                entry["changed_to"] = actual["sha256"]
                self._dirty = True
                raise ChecksumError(self._changed(file, entry))
            if entry.pop("changed_to", None):  # put back as it was: fine again
                self._dirty = True
            if any(a not in entry for a in wanted):
                entry.update(actual)
                self._dirty = True
            return {a: actual[a] for a in algorithms}
        if not same:
            entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        missing = [a for a in algorithms if a not in entry]
        if missing:
            entry.update(file_digests(file, missing, progress=progress))
            self._data[key] = entry
            self._dirty = True
            self._read_now.add(key)
        return {a: entry[a] for a in algorithms}

    @staticmethod
    def _changed(file: Path, entry: dict[str, Any]) -> str:
        return (f"{file} changed on disk with its size and modification time unchanged (SHA-256 {entry.get('sha256', 'unknown')} "
                f"when it was verified, {entry['changed_to']} now): it is corrupt")

    def sha256(self, file: Path, *, progress: bool = False) -> str:
        return self.digests(file, ("sha256",), progress=progress)["sha256"]

    def verify(self, file: Path, *, sha256: str | None = None, md5: str | None = None,
               progress: bool = False, fresh: bool = False) -> str:
        """The file's SHA-256, after checking it against the pinned ``sha256`` / ``md5``; raises
        :class:`ChecksumError` naming the file and both values. ``fresh``: read it again instead
        of trusting the digest remembered for its size and modification time."""
        algorithms = ["sha256"] + (["md5"] if md5 else [])
        actual = self.digests(file, algorithms, progress=progress, fresh=fresh)
        if sha256 and not actual["sha256"].startswith(sha256.lower()):
            raise ChecksumError(f"{file} has SHA-256 {actual['sha256']}; expected {sha256}")
        if md5 and actual["md5"] != md5.lower():
            raise ChecksumError(f"{file} has MD5 {actual['md5']}; expected {md5}")
        return actual["sha256"]

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self._data, indent=0, sort_keys=True))
        os.replace(tmp, self.path)
        self._dirty = False
