"""Downloads that are atomic, resumable, shown with progress and verified by SHA-256 before use,
plus archive extraction that refuses members escaping the target directory, turns a damaged,
truncated or foreign archive into one line naming it, and installs without deleting or
overwriting anything it did not create."""
from __future__ import annotations

import contextlib
import fnmatch
import glob
import gzip
import hashlib
import http.client
import lzma
import os
import re
import shutil
import socket
import tarfile
import urllib.error
import urllib.request
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from disentbench.contracts import Unavailable

CHUNK = 1 << 20
OFFLINE_ENV = "DISENTBENCH_OFFLINE"
# What a failed transfer raises: no network, refused, HTTP error, connection cut mid-body, timeout.
NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError)


def downloads_allowed() -> bool:
    """False when ``$DISENTBENCH_OFFLINE`` is set (1/true/yes): missing files then fail at once
    with their manual-placement instructions instead of trying the network."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("1", "true", "yes")


class ChecksumError(Exception):
    """A file's SHA-256 (or size) is not the pinned one."""


class UnsafeArchiveError(Exception):
    """An archive member would be written outside the extraction directory."""


class IncompleteDownload(OSError):
    """The connection ended before the announced length arrived; the partial file is kept."""


class CorruptFileError(ChecksumError):
    """A file is present but cannot be read as what it should be: a truncated or damaged archive, a
    file that is no archive at all, or a data file its loader cannot decode. The message names the
    file and says to delete it and fetch it again."""


class InstallConflict(FileExistsError):
    """Installing would overwrite or delete files the install did not create; nothing was changed."""


def file_digests(path: Path, algorithms: Iterable[str] = ("sha256",), *, progress: bool = False) -> dict[str, str]:
    """Hex digests of ``path`` for each hashlib algorithm, computed in one pass over the file."""
    path = Path(path)
    digests = {name: hashlib.new(name) for name in algorithms}
    bar = _bar(path.stat().st_size, f"checksum {path.name}", progress)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            for digest in digests.values():
                digest.update(block)
            bar.update(len(block))
    bar.close()
    return {name: digest.hexdigest() for name, digest in digests.items()}


def verify(path: Path, sha256: str | None, size: int | None = None, *, md5: str | None = None,
           progress: bool = False) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the pinned size, SHA-256 (full or prefix)
    and MD5 (for sources that publish only an MD5). Unpinned checks are skipped."""
    path = Path(path)
    if size is not None and path.stat().st_size != size:
        raise ChecksumError(f"{path} has {path.stat().st_size} bytes; expected {size}")
    wanted = {name: value.lower() for name, value in (("sha256", sha256), ("md5", md5)) if value}
    if not wanted:
        return
    actual = file_digests(path, wanted, progress=progress)
    for name, value in wanted.items():
        ok = actual[name].startswith(value) if name == "sha256" else actual[name] == value
        if not ok:
            label = {"sha256": "SHA-256", "md5": "MD5"}[name]
            raise ChecksumError(f"{path} has {label} {actual[name]}; expected {value}")


def _bar(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled, leave=False)


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``url`` to ``dest``: into ``dest.part`` (resumed with an HTTP Range request when a
    partial file exists), verified, then renamed. A file that fails verification is deleted; if it
    had been resumed, the download starts over once (the partial file may have been stale).
    A transfer cut short leaves ``dest.part`` for the next call to resume. Concurrent callers for
    the same ``dest`` take turns (a lock file beside it)."""
    dest = Path(dest)
    if dest.exists():
        verify(dest, sha256, size, md5=md5)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with _locked(dest.with_name(f".{dest.name}.lock")):
        if dest.exists():  # another process finished it while we waited
            verify(dest, sha256, size, md5=md5)
            return dest
        for attempt in range(2):
            resumed = _transfer(url, part, size=size, progress=progress, timeout=timeout)
            try:
                verify(part, sha256, size, md5=md5, progress=progress)
            except ChecksumError:
                part.unlink(missing_ok=True)
                if resumed and attempt == 0:
                    continue
                raise
            os.replace(part, dest)
            return dest
    raise AssertionError("unreachable")  # pragma: no cover


def _transfer(url: str, part: Path, *, size: int | None, progress: bool, timeout: float) -> bool:
    """Append the rest of ``url`` to ``part`` (or write it whole); True if it resumed."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:  # longer than the real file: it cannot be a prefix
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return True
    request = urllib.request.Request(url, headers={"User-Agent": "disentbench"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing after our offset: the partial file is whole
            return True
        raise
    with response:
        status = getattr(response, "status", None)
        if offset and not (status == 206 and _range_start(response.headers.get("Content-Range")) == offset):
            offset = 0  # the server ignored the range (or is a file:// URL): start over
        length = response.headers.get("Content-Length")
        total = (int(length) + offset) if length is not None else size
        with part.open("ab" if offset else "wb") as f, _bar(total, part.name[: -len(".part")], progress) as bar:
            bar.update(offset)
            tee = _Tee(response, bar)
            shutil.copyfileobj(tee, f, CHUNK)
        if length is not None and tee.received < int(length):  # urllib returns b"" on a cut connection
            raise IncompleteDownload(
                f"the connection to {url} closed after {offset + tee.received} of {total} bytes; "
                f"{part} is kept and the next attempt resumes it"
            )
    return offset > 0


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", content_range or "")
    return int(match.group(1)) if match else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX); a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        except BaseException:
            fcntl.flock(handle, fcntl.LOCK_UN)
            raise
        # Done: the file is in place, so waiters (and late comers with a fresh lock file) return at
        # once; only then is the lock file removed. After a failure it stays, keeping turns strict.
        path.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)


class _Tee:
    def __init__(self, response, bar) -> None:
        self.response, self.bar, self.received = response, bar, 0

    def read(self, n: int = -1) -> bytes:
        block = self.response.read(n)
        self.bar.update(len(block))
        self.received += len(block)
        return block


@dataclass(frozen=True)
class ArchiveContents:
    """What a complete archive holds, where known; checked before an archive without a published
    checksum is installed. ``files`` maps member names to their size in bytes (None: any size);
    ``at_least`` maps a glob pattern (``fnmatch``, ``*`` crosses ``/``) to the fewest file members
    that must match it."""

    files: Mapping[str, int | None] = field(default_factory=dict)
    at_least: Mapping[str, int] = field(default_factory=dict)

    def problems(self, members: Mapping[str, int]) -> list[str]:
        """What ``members`` (name → size of every file member) lacks; empty when complete."""
        out = []
        missing = [name for name in self.files if name not in members]
        if missing:
            out.append(f"{len(missing)} expected member(s) missing ({', '.join(missing[:3])}"
                       f"{', ...' if len(missing) > 3 else ''})")
        wrong = [f"{name} has {members[name]} bytes, expected {size}" for name, size in self.files.items()
                 if size is not None and name in members and members[name] != size]
        out.extend(wrong[:3])
        for pattern, n in self.at_least.items():
            found = sum(1 for name in members if fnmatch.fnmatch(name, pattern))
            if found < n:
                out.append(f"{found} member(s) match {pattern!r}, expected at least {n}")
        return out


@dataclass(frozen=True)
class Resource:
    """One file a dataset or weight needs: where it comes from and how to check it.

    ``md5`` is for sources that publish only an MD5; it is checked beside the SHA-256 when both
    are given. ``contents`` says what a complete archive holds (checked when nothing is pinned)."""

    filename: str  # relative to its root directory
    url: str = ""
    sha256: str | None = None
    size: int | None = None
    manual: str = ""  # how to get it by hand (behind a login, flaky host, ...)
    md5: str | None = None
    contents: ArchiveContents | None = field(default=None, compare=False)  # an archive's expected members

    @property
    def pinned(self) -> bool:
        return bool(self.sha256 or self.md5)

    def ensure(self, root: Path, *, progress: bool = True, allow_download: bool = True) -> Path:
        """The verified local file: present already, or downloaded, or an :class:`Unavailable` error
        saying which file to put where and how to fetch it. Nothing is downloaded while
        ``$DISENTBENCH_OFFLINE`` is set."""
        path = Path(root) / self.filename
        if path.exists():
            try:
                verify(path, self.sha256, self.size, md5=self.md5, progress=progress)
            except ChecksumError as exc:
                raise ChecksumError(
                    f"{exc}. The file is corrupt or incomplete: delete it and fetch it again{self._how(path)}"
                ) from None
            return path
        if self.url and allow_download and downloads_allowed():
            try:
                return download(self.url, path, sha256=self.sha256, size=self.size, md5=self.md5,
                                progress=progress)
            except ChecksumError as exc:
                raise ChecksumError(
                    f"the download from {self.url} is corrupt and was deleted ({exc}). Try again later, or fetch "
                    f"it by hand:{self._how(path)}"
                ) from None
            except NETWORK_ERRORS as exc:
                partial = path.with_name(path.name + ".part")
                kept = f" The partial file {partial} is kept; running again resumes it." if partial.exists() else ""
                raise Unavailable(
                    f"missing file {path} and the download from {self.url} failed ({exc}).{kept}{self._how(path)}"
                ) from None
        offline = f" (downloads are off: ${OFFLINE_ENV} is set)" if self.url and allow_download else ""
        raise Unavailable(f"missing file {path}{offline}.{self._how(path)}")

    def _how(self, path: Path) -> str:
        parts = [f" Put the file at {path}"]
        if self.sha256:
            parts.append(f" (SHA-256 {self.sha256})")
        elif self.md5:
            parts.append(f" (MD5 {self.md5})")
        if self.url:
            parts.append(f"; it can be downloaded from {self.url}")
        if self.manual:
            parts.append(f"; {self.manual}")
        return "".join(parts) + "."


def _check_member(name: str, dest: Path) -> Path:
    target = (dest / name).resolve()
    if os.path.isabs(name) or not target.is_relative_to(dest.resolve()):
        raise UnsafeArchiveError(f"archive member {name!r} would be written outside {dest}; refusing to extract")
    return target


MemberFilter = Iterable[str] | Callable[[str], bool] | None


def _wanted(members: MemberFilter) -> Callable[[str], bool]:
    if members is None:
        return lambda name: True
    if callable(members):
        return members
    chosen = set(members)
    return lambda name: name in chosen


ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
# What a damaged, truncated or foreign file raises while it is read as an archive.
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)
_FETCH_AGAIN = "it is corrupt, truncated or not an archive: delete it and fetch it again"


def is_archive_name(name: str | Path) -> bool:
    return str(name).lower().endswith(ARCHIVE_SUFFIXES)


def _is_data_error(exc: BaseException) -> bool:
    """A read error caused by the file's bytes (not by the disk: those carry an errno)."""
    return isinstance(exc, _ARCHIVE_ERRORS) or (isinstance(exc, OSError) and exc.errno is None)


def _why(archive: Path, exc: BaseException) -> str:
    """One short clause for what is wrong with ``archive``, from what reading it raised."""
    text = str(exc).strip().splitlines()[0].rstrip(":") if str(exc).strip() else type(exc).__name__
    if isinstance(exc, EOFError):
        return "its compressed data ends early (truncated)"
    if isinstance(exc, tarfile.ReadError) and "unexpected end of data" in text:
        return "it ends in the middle of a member (truncated)"
    if isinstance(exc, tarfile.ReadError) and ("could not be opened" in text or "header" in text):
        try:
            with open(archive, "rb") as f:
                head = f.read(16)
        except OSError:
            head = b""
        kind = "a complete zip archive" if archive.name.lower().endswith(".zip") else "a tar or zip archive"
        return f"it is not {kind} ({archive.stat().st_size} bytes, starting {head!r})"
    return f"{type(exc).__name__}: {text}"


def _corrupt(archive: Path, why: str) -> CorruptFileError:
    return CorruptFileError(f"cannot read {archive}: {why}; {_FETCH_AGAIN}")


def _tar_end_problem(archive: Path, tf: tarfile.TarFile, members: list[tarfile.TarInfo]) -> str | None:
    """For an uncompressed tar: a member whose data runs past the end of the file, or no
    end-of-archive block after the last member (what a download cut at a member boundary leaves)."""
    if any(m.issparse() for m in members):
        return None
    size = archive.stat().st_size
    end = 0
    for m in members:
        data_end = m.offset_data + (-(-m.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE if m.isreg() else 0)
        if data_end > size:
            return f"member {m.name!r} runs past the end of the file (truncated)"
        end = max(end, data_end, m.offset_data)
    with open(archive, "rb") as f:
        f.seek(end)
        block = f.read(tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE or block.count(0) != len(block):
        return f"it ends after {len(members)} member(s) without the end-of-archive block (truncated)"
    return None


def archive_members(archive: Path) -> dict[str, int]:
    """Name → size of every file member of a tar or zip archive, reading it to its end: raises
    :class:`CorruptFileError` naming the file if it is not an archive, is damaged or truncated."""
    archive = Path(archive)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                return {i.filename: i.file_size for i in zf.infolist() if not i.is_dir()}
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            problem = _tar_end_problem(archive, tf, members) if _uncompressed(tf) else None
            if problem:
                raise _corrupt(archive, problem)
            return {m.name: m.size for m in members if m.isreg()}
    except CorruptFileError:
        raise
    except Exception as exc:  # noqa: BLE001  (only data errors are turned into the clean message)
        if _is_data_error(exc):
            raise _corrupt(archive, _why(archive, exc)) from None
        raise


def _uncompressed(tf: tarfile.TarFile) -> bool:
    import io

    return isinstance(tf.fileobj, (io.BufferedReader, io.FileIO))


def check_archive(archive: Path, contents: ArchiveContents | None = None) -> dict[str, int]:
    """:func:`archive_members`, then (when given) the expected ``contents``; raises
    :class:`CorruptFileError` naming the file and what is missing."""
    members = archive_members(archive)
    problems = contents.problems(members) if contents is not None else []
    if problems:
        raise _corrupt(Path(archive), f"it is incomplete: {'; '.join(problems)}")
    return members


def _host_pid_alive(host: str, pid: str) -> bool:
    if host != socket.gethostname():
        return True  # another machine's (a shared data root): not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _staging_dir(near: Path) -> Path:
    """A fresh hidden folder beside ``near`` (same file system, so publishing is a rename). Staging
    folders that an earlier, killed extraction on this host left behind are removed first: their
    names carry host and process id, so no other folder is ever touched."""
    near = Path(near)
    near.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{near.name}.partial-"
    for stale in near.parent.glob(f"{glob.escape(prefix)}*"):
        ours = re.fullmatch(r"(.+)-(\d+)-[0-9a-f]{8}", stale.name[len(prefix):])
        if ours and stale.is_dir() and not stale.is_symlink() and not _host_pid_alive(ours[1], ours[2]):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = near.parent / f"{prefix}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


@contextlib.contextmanager
def extracted(archive: Path, near: Path, members: MemberFilter = None) -> Iterator[Path]:
    """Extract ``archive`` (the :func:`safe_extract` guards) into a fresh staging folder beside
    ``near`` and yield it; the staging folder is removed afterwards, whatever was moved out of it."""
    archive = Path(archive)
    tmp = _staging_dir(near)
    try:
        try:
            _extract_into(archive, tmp, Path(near), _wanted(members))
        except (UnsafeArchiveError, CorruptFileError):
            raise
        except Exception as exc:  # noqa: BLE001  (only data errors are turned into the clean message)
            if _is_data_error(exc):
                raise _corrupt(archive, _why(archive, exc)) from None
            raise
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_into(archive: Path, tmp: Path, dest: Path, wanted: Callable[[str], bool]) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if wanted(n)]
            for name in names:
                _check_member(name, tmp)
            zf.extractall(tmp, names)
        return
    with tarfile.open(archive) as tf:
        everything = tf.getmembers()
        if _uncompressed(tf):  # a compressed stream checks its own end; a plain tar is checked here
            problem = _tar_end_problem(archive, tf, everything)
            if problem:
                raise _corrupt(archive, problem)
        chosen = [m for m in everything if wanted(m.name)]
        for member in chosen:
            _check_member(member.name, tmp)
            if member.issym() or member.islnk():
                link_base = tmp / Path(member.name).parent if member.issym() else tmp
                if os.path.isabs(member.linkname) or not (link_base / member.linkname).resolve().is_relative_to(tmp.resolve()):
                    raise UnsafeArchiveError(
                        f"archive member {member.name!r} links to {member.linkname!r} outside {dest}; refusing to extract"
                    )
            elif not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(
                    f"archive member {member.name!r} is a device or pipe; refusing to extract {archive}"
                )
        # Python's own "data" filter (3.10.12+/3.11.4+) re-checks every path at write time.
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            tf.extractall(tmp, members=chosen, **extra)
        except getattr(tarfile, "FilterError", ()) as exc:
            raise UnsafeArchiveError(f"refusing to extract {archive}: {exc}") from None


def publish_tree(src: Path, dest: Path) -> list[str]:
    """Move the folder ``src`` to ``dest`` without deleting or overwriting anything there.

    Where ``dest`` does not exist (or is an empty folder) ``src`` is renamed to it. Otherwise the
    trees are merged: files missing from ``dest`` are moved in, files already there with the same
    size are kept as they are, and if any entry there differs (another size, a folder where a file
    goes or the reverse) :class:`InstallConflict` names them and nothing is moved. Returns the
    paths (relative to ``dest``) that were added."""
    src, dest = Path(src), Path(dest)
    if not os.path.lexists(dest) or (dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir())):
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(src, dest)
            return ["."]
        except OSError:
            if not dest.is_dir():  # not a race with another install that filled it first
                raise
    if not dest.is_dir():
        raise InstallConflict(f"cannot install into {dest}: a file is there, not a folder; nothing was changed. "
                              f"Move it elsewhere and run again (an install never deletes what it did not create)")
    leaves, dirs = [], []
    for dirpath, dirnames, filenames in os.walk(src):
        base = Path(dirpath).relative_to(src)
        for d in dirnames:
            (leaves if (Path(dirpath) / d).is_symlink() else dirs).append(base / d)
        leaves.extend(base / f for f in filenames)
    conflicts, moves = [], []
    for rel in leaves:
        here, there = src / rel, dest / rel
        blocked = next((p for p in reversed(rel.parents[:-1]) if (dest / p).exists() and not (dest / p).is_dir()), None)
        if blocked is not None:
            conflicts.append(f"{dest / blocked} (a file where a folder goes)")
        elif not os.path.lexists(there):
            moves.append(rel)
        elif here.is_symlink():
            continue  # a link the archive holds: whatever is there is kept
        elif not there.is_file() or there.stat().st_size != here.stat().st_size:
            what = "a folder" if there.is_dir() else f"{there.stat().st_size} bytes, the archive's {here.stat().st_size}"
            conflicts.append(f"{there} ({what})")
    for rel in dirs:
        if (dest / rel).exists() and not (dest / rel).is_dir():
            conflicts.append(f"{dest / rel} (a file where a folder goes)")
    if conflicts:
        raise InstallConflict(
            f"cannot install into {dest}: {len(conflicts)} existing entr{'y differs' if len(conflicts) == 1 else 'ies differ'} "
            f"from the files being installed: {', '.join(conflicts[:3])}{', ...' if len(conflicts) > 3 else ''}; "
            f"nothing was changed. An install never overwrites or deletes what it did not create: move "
            f"{'it' if len(conflicts) == 1 else 'them'} (or the whole folder) elsewhere and run again"
        )
    for rel in dirs:
        (dest / rel).mkdir(parents=True, exist_ok=True)
    for rel in moves:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.rename(src / rel, dest / rel)
    return [str(rel) for rel in moves]


def safe_extract(archive: Path, dest: Path, members: MemberFilter = None) -> Path:
    """Extract a tar or zip archive into ``dest``, refusing absolute paths, ``..`` and links that
    leave the tree (nothing is written then). ``members`` is a list of member names or a predicate
    on them. Extraction goes to a fresh staging folder beside ``dest``, which is then published
    with :func:`publish_tree`: renamed into place where nothing is, else merged without
    overwriting or deleting anything (an existing ``dest`` may hold files it did not create, e.g.
    a run store). A damaged, truncated or foreign file raises :class:`CorruptFileError` naming it."""
    archive, dest = Path(archive), Path(dest)
    with extracted(archive, dest, members) as tmp:
        publish_tree(tmp, dest)
    return dest
