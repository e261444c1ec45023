"""What the built-in real datasets share: find the raw files under the data root (or fetch them),
verify them against pinned checksums, preprocess them once into a memory-mapped cache, and hand
out deterministic splits as views into it.

A dataset subclasses :class:`FileDataset` and implements :meth:`~FileDataset.locate` (which files,
where, which checksums), :meth:`~FileDataset.build` (decode, resize, label, order by split) and,
where the files can be downloaded, :meth:`~FileDataset.downloads` and
:meth:`~FileDataset.install`. Everything else (``fetch``, ``load``, ``describe``, errors that say
which file to put where) lives here once.

Each split is one contiguous range of the cached arrays, so loading is a handful of memory maps.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Sequence

import numpy as np

from disentbench.contracts import DataBundle, Split, Unavailable
from disentbench.datacache import ArrayCache, ArrayWriter, CachedArrays, HashStamps, cache_key
from disentbench.download import (
    ChecksumError,
    CorruptFileError,
    Resource,
    check_archive,
    is_archive_name,
    publish_tree,
    verify,
)

DOWNLOADS = "downloads"  # archives go to <data root>/downloads/


class DataMissing(Unavailable):
    """The raw files of a dataset are not under the data root (the message says what to do)."""


@dataclass
class Sources:
    """The raw files found for a dataset.

    ``files`` maps a name relative to ``folder`` to its path; ``pins`` maps the same names to
    pinned checksums (``{"sha256": ...}`` and/or ``{"md5": ...}``). Folders of very many files
    (extracted image sets) set ``fingerprint_only``: they are identified by names and sizes
    instead of being hashed, and reported as unpinned."""

    folder: Path
    files: dict[str, Path]
    pins: dict[str, dict[str, str]] = field(default_factory=dict)
    layout: str = ""
    fingerprint_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files.values())


@dataclass
class Layout:
    """What :meth:`FileDataset.build` writes besides the arrays: where each split lies in them,
    the factor names and sizes, the names of per-image extras, and the protocol description."""

    splits: dict[str, tuple[int, int]]
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    extras: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


class FileDataset:
    """Base class of datasets read from files (see the module docstring)."""

    name: ClassVar[str] = ""
    homepage: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1  # bump when build() changes, so caches are rebuilt
    Config: ClassVar[type]

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    # -- what each dataset provides -------------------------------------------------------
    def locate(self, root: Path) -> Sources:
        """The raw files under ``root``; raises :class:`DataMissing` saying what to put where."""
        raise NotImplementedError

    def build(self, sources: Sources, writer: ArrayWriter, progress: bool) -> Layout:
        """Decode and preprocess ``sources`` into ``writer``: ``images`` (N, H, W, C) uint8,
        ``classes`` (N,), optionally ``factors`` (N, F) and ``extra.<name>`` arrays, ordered so
        that every split is one contiguous range."""
        raise NotImplementedError

    def downloads(self) -> list[Resource]:
        """Files ``fetch`` downloads, named relative to the data root (empty: manual only)."""
        return []

    def install(self, root: Path, files: list[Path], progress: bool) -> None:
        """Turn downloaded files into the layout :meth:`locate` reads (e.g. extract an archive).
        By default, files dropped by hand into the data root are moved to their place."""
        for resource, path in zip(self.downloads(), files):
            target = Path(root) / resource.filename
            if Path(path) != target and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                Path(path).rename(target)

    def manual(self, root: Path) -> str:
        """How to get the files by hand; part of every "missing" error."""
        return ""

    @contextlib.contextmanager
    def reading(self, path: Path | str) -> Iterator[None]:
        """Wrap the decoding of one source file: any failure becomes one line naming the file and
        what to do (``cannot read <path>: <why>; ... delete it and fetch it again``)."""
        try:
            yield
        except (Unavailable, MemoryError):
            raise
        except OSError as exc:
            if exc.errno is not None:  # the disk or permissions, not the file's bytes: never say to delete it
                raise
            raise self._unreadable(path, exc) from exc
        except Exception as exc:  # noqa: BLE001  (whatever the decoder raises, the user needs the file's name)
            raise self._unreadable(path, exc) from exc

    def _unreadable(self, path: Path | str, exc: BaseException) -> CorruptFileError:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        why = why.removeprefix(f"{path}: ").removeprefix(f"{path} ")
        how = (f"delete it and run `disentbench data fetch {self.name}`" if self.downloads()
               else f"replace it with a good copy (`disentbench data info {self.name}` says where it comes from)")
        return CorruptFileError(f"dataset {self.name!r}: cannot read {path}: {type(exc).__name__}: {why}. "
                                f"The file is corrupt or truncated: {how}")

    def protocol(self) -> str:
        """One line describing the split protocol (shown by ``data info`` before any load)."""
        return ""

    def preprocessing(self) -> dict[str, Any]:
        """The options that change the cached arrays (default: the whole config)."""
        return dataclasses.asdict(self.config)

    # -- shared behaviour -----------------------------------------------------------------
    def folder(self, root: Path) -> Path:
        return Path(root) / self.name

    def fetch(self, root: Path, *, progress: bool = True) -> Path:
        """Make the verified raw files present under ``root``: download and install what is
        missing (or install from archives placed by hand). Returns the dataset folder."""
        root = Path(root)
        sources = self._sources(root, progress=progress, download=True)
        stamps = self._stamps_for(root)
        self.verify(sources, stamps, progress=progress, rehash=True)  # never trust a remembered hash here
        stamps.save()
        return sources.folder

    def load(self, data_dir: Path, cache_dir: Path, *, progress: bool = True) -> DataBundle:
        """Find (or fetch) the files, build the cache on first use, memory-map the splits."""
        root = Path(data_dir)
        stamps = HashStamps(Path(cache_dir) / f"{self.name}.hashes.json")
        sources = self._sources(root, progress=progress, download=True)
        cache = self._cache(sources, stamps, Path(cache_dir), progress)
        if not self._usable(cache):  # a cache is built only from files hashed for this build
            checksums = self.verify(sources, stamps, progress=progress, rehash=True)
            with cache.build() as writer:
                layout = self.build(sources, writer, progress)
                writer.meta = {
                    "splits": {k: [int(a), int(b)] for k, (a, b) in layout.splits.items()},
                    "factor_names": list(layout.factor_names),
                    "factor_sizes": [int(s) for s in layout.factor_sizes],
                    "extras": list(layout.extras),
                    "info": layout.info,
                    "checksums": checksums,
                }
        stamps.save()
        return self.bundle(cache.load(), sources)

    def describe(self, root: Path, cache_dir: Path, *, verify: bool = False) -> dict[str, Any]:
        """Where the files are, their size, checksum state, the cache and the splits. Checksums are
        those remembered by size and modification time unless ``verify`` (re-hash every file)."""
        root = Path(root)
        out: dict[str, Any] = {"homepage": self.homepage, "folder": str(self.folder(root)),
                               "protocol": self.protocol()}
        try:
            sources = self.locate(root)
        except DataMissing as exc:
            archives = [str(p) for p in (self._archive_path(root, r) for r in self.downloads()) if p]
            out.update(found=False, how_to_get=str(exc))
            if archives:
                out["archives_here"] = archives + ["(installed on the next `data fetch` or load)"]
            return out
        stamps = HashStamps(Path(cache_dir) / f"{self.name}.hashes.json")
        out.update(found=True, folder=str(sources.folder), layout=sources.layout, files=len(sources.files),
                   size=_human(sources.total_bytes))
        try:
            out["checksums"] = self.verify(sources, stamps, progress=False, rehash=verify)["state"]
            out["checked"] = ("every file re-hashed now" if verify else "a remembered hash is trusted while the "
                              "file's size and modification time are unchanged; `data info --verify` re-hashes")
        except ChecksumError as exc:
            out["checksums"] = f"CORRUPT: {exc}"
            stamps.save()
            return out
        cache = self._cache(sources, stamps, Path(cache_dir), progress=False)
        stamps.save()
        if self._usable(cache):
            cached = cache.load()
            out["cache"] = {"path": str(cache.path), "size": _human(cached.nbytes())}
            bundle = self.bundle(cached, sources)
            out["splits"] = {k: {"images": len(s), "classes": int(len(np.unique(s.classes)))}
                             for k, s in bundle.splits.items()}
            c, h, w = bundle.train.image_shape
            out["images"] = f"{h}x{w}x{c} uint8"
        else:
            out["cache"] = {"path": str(cache.path), "built": False,
                            "note": "the splits are made when the first run loads the dataset"}
        return out

    def bundle(self, cached: CachedArrays, sources: Sources | None = None) -> DataBundle:
        """Splits as views into the cached arrays, plus the protocol and provenance in ``info``."""
        meta, arrays = cached.meta, cached.arrays
        images, classes = arrays["images"], arrays["classes"]
        factors = arrays.get("factors")
        names, sizes = tuple(meta["factor_names"]), tuple(meta["factor_sizes"])
        extras = {name: arrays[f"extra.{name}"] for name in meta["extras"]}
        splits = {}
        for split, (a, b) in meta["splits"].items():
            splits[split] = Split(
                images=np.asarray(images[a:b]),
                classes=np.asarray(classes[a:b]),
                factors=None if factors is None else np.asarray(factors[a:b]),
                factor_names=names if factors is not None else (),
                factor_sizes=sizes if factors is not None else (),
                extras={k: np.asarray(v[a:b]) for k, v in extras.items()},
            )
        info = dict(meta["info"])
        info.update(cache_key=cached.path.name.rsplit("-", 1)[-1], checksums=meta["checksums"]["state"],
                    preprocessing=self.preprocessing())
        if sources is not None:
            info["source_folder"] = str(sources.folder)
        return DataBundle(name=self.name, splits=splits, info=info)

    def verify(self, sources: Sources, stamps: HashStamps, *, progress: bool = False,
               rehash: bool = False) -> dict[str, Any]:
        """Check every pinned file (hashing each once; later calls only stat it, unless ``rehash``:
        then every file is read again, which catches a file corrupted with its size and modification
        time unchanged). Raises :class:`ChecksumError` naming the file and what to do; returns the
        checksum state."""
        pinned = unpinned = fingerprinted = 0
        digests: dict[str, str] = {}
        items = [(rel, path) for rel, path in sources.files.items()
                 if sources.pins.get(rel) or not sources.fingerprint_only]
        fingerprinted = len(sources.files) - len(items)
        iterator = _progress(items, f"{self.name}: verifying", progress and len(items) > 1)
        bad = []
        for rel, path in iterator:
            pin = sources.pins.get(rel, {})
            try:
                digests[rel] = stamps.verify(path, sha256=pin.get("sha256"), md5=pin.get("md5"),
                                             progress=progress and len(items) == 1, fresh=rehash)
            except ChecksumError as exc:
                bad.append(str(exc))
            pinned += bool(pin)
            unpinned += not pin
        stamps.save()
        if bad:
            manual = self.manual(sources.folder.parent)
            listing = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise ChecksumError(
                f"dataset {self.name!r}: {len(bad)} file(s) do not match their pinned or recorded checksums: {listing}. "
                f"Corrupt or incomplete files are never used: delete them and run `disentbench data fetch "
                f"{self.name}`" + (f"; {manual}" if manual else "")
            )
        parts = []
        if pinned:
            parts.append(f"{pinned} file(s) match the pinned checksums")
        if unpinned:
            parts.append(f"{unpinned} unpinned file(s), SHA-256 recorded on first use (no published checksums)")
        if fingerprinted:
            parts.append(f"{fingerprinted} unpinned file(s) identified by name and size (too many to hash; "
                         "no published checksums for this layout)")
        state = ("verified: " if pinned and not (unpinned or fingerprinted) else "") + "; ".join(parts)
        return {"state": state, "sha256": digests}

    # -- internals ------------------------------------------------------------------------
    def _usable(self, cache: ArrayCache) -> bool:
        """Whether the cache entry exists and reads back. A damaged one (truncated arrays, bad
        ``meta.json``) is moved aside, kept for inspection with a warning naming it, and rebuilt."""
        if not cache.exists():
            return False
        try:
            self.bundle(cache.load())
            return True
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = cache.path.with_name(f"{cache.path.name}.damaged-{os.getpid()}-{int(time.time())}")
            try:
                os.rename(cache.path, aside)
            except FileNotFoundError:  # another worker moved it first
                return cache.exists()
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            print(f"disentbench: warning: dataset cache {cache.path} cannot be read ({type(exc).__name__}: {why}); "
                  f"moved to {aside} and rebuilt from the source files", file=sys.stderr, flush=True)
            return False

    def _stamps_for(self, root: Path) -> HashStamps:
        from disentbench.paths import cache_root

        return HashStamps(cache_root() / "datasets" / f"{self.name}.hashes.json")

    def _archive_path(self, root: Path, resource: Resource) -> Path | None:
        """A download already here: at its own place, or dropped by hand into the data root."""
        for path in (root / resource.filename, root / Path(resource.filename).name):
            if path.exists():
                return path
        return None

    def _sources(self, root: Path, *, progress: bool, download: bool) -> Sources:
        """Locate the files; if they are missing, install them from archives already here
        (verified first) or, when ``download``, from fresh downloads."""
        try:
            return self.locate(root)
        except DataMissing as missing:
            resources = self.downloads()
            here = [self._archive_path(root, r) for r in resources]
            if not resources or not (all(here) or download):
                raise
            files = []
            for resource, path in zip(resources, here):
                if path is None:
                    try:
                        path = resource.ensure(root, progress=progress, allow_download=True)
                    except Unavailable as exc:
                        raise DataMissing(f"{missing} Fetching it failed: {exc}") from None
                else:
                    try:
                        verify(path, resource.sha256, resource.size, md5=resource.md5, progress=progress)
                    except ChecksumError as exc:
                        raise ChecksumError(
                            f"dataset {self.name!r}: {exc}. The archive is corrupt or incomplete and will not be "
                            f"used: delete it and run `disentbench data fetch {self.name}`"
                        ) from None
                if not resource.pinned and (resource.contents is not None or is_archive_name(path)):
                    try:  # nothing vouches for it: it must read to its end and hold what is expected
                        check_archive(path, resource.contents)
                    except CorruptFileError as exc:
                        raise CorruptFileError(f"dataset {self.name!r}: {exc} (`disentbench data fetch "
                                               f"{self.name}`)") from None
                files.append(path)
            try:
                self.install(root, files, progress)
            except CorruptFileError as exc:
                raise CorruptFileError(f"dataset {self.name!r}: {exc} (`disentbench data fetch {self.name}`)") from None
            return self.locate(root)

    def _cache(self, sources: Sources, stamps: HashStamps, cache_dir: Path, progress: bool) -> ArrayCache:
        key = cache_key(self.name, self.VERSION, self.preprocessing(), self._source_digest(sources, stamps, progress))
        return ArrayCache(cache_dir, self.name, key)

    def _source_digest(self, sources: Sources, stamps: HashStamps, progress: bool) -> str:
        """What identifies the raw data: pinned checksums where pinned (no I/O), else the recorded
        SHA-256 of each file, else (fingerprint-only folders) names and sizes."""
        h = hashlib.sha256()
        for rel in sorted(sources.files):
            path = sources.files[rel]
            pin = sources.pins.get(rel)
            if pin:
                value = pin.get("sha256") or f"md5:{pin['md5']}"
            elif sources.fingerprint_only:
                value = f"size:{path.stat().st_size}"
            else:
                value = stamps.sha256(path, progress=progress)
            h.update(f"{rel}\0{value}\n".encode())
        return h.hexdigest()


def _progress(items: Sequence[Any], desc: str, enabled: bool) -> Iterable[Any]:
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, disable=not enabled, leave=False)


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar counting images (closed by the caller or used as a context manager)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def move_into_place(src: Path, dest: Path) -> None:
    """Move an extracted folder to its final place without deleting or overwriting anything there
    (:func:`disentbench.download.publish_tree`): renamed where nothing is, else merged, adding only
    the files that are missing; files that differ raise ``InstallConflict`` naming them."""
    publish_tree(src, dest)


def rank_by_hash(names: Sequence[str], seed: int | str) -> list[str]:
    """``names`` in a pseudo-random order that depends only on (seed, name): a deterministic,
    platform-independent way to hold out items that does not shift when other items change."""
    return sorted(names, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())


def held_out(names: Sequence[str], n: int, seed: int, salt: str) -> set[str]:
    """The ``n`` names chosen for the test split: first in a hash order of (salt, seed, name)."""
    if not 0 < n < len(names):
        raise ValueError(f"cannot hold out {n} of {len(names)} {salt} items; need 0 < n < {len(names)}")
    return set(rank_by_hash(list(names), f"{salt}:{seed}")[:n])
