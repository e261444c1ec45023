"""Downloads that are atomic, resumable, shown with progress and verified by SHA-256 before use,
plus archive extraction that refuses members escaping the target directory."""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

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


def sha256_file(path: Path, *, progress: bool = False) -> str:
    return file_digests(path, ("sha256",), progress=progress)["sha256"]


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
class Resource:
    """One file a dataset or weight needs: where it comes from and how to check it.

    ``md5`` is for sources that publish only an MD5; it is checked beside the SHA-256 when both
    are given."""

    filename: str  # relative to its root directory
    url: str = ""
    sha256: str | None = None
    size: int | None = None
    manual: str = ""  # how to get it by hand (behind a login, flaky host, ...)
    md5: str | None = None

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


def safe_extract(archive: Path, dest: Path, members: MemberFilter = None) -> Path:
    """Extract a tar or zip archive into ``dest``, refusing absolute paths, ``..`` and links that
    leave the tree (nothing is written then). ``members`` is a list of member names or a predicate
    on them. Extraction goes to a temporary directory renamed into place when complete; an
    existing ``dest`` is replaced."""
    archive, dest = Path(archive), Path(dest)
    wanted = _wanted(members)
    tmp = dest.with_name(dest.name + ".extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                names = [n for n in zf.namelist() if wanted(n)]
                for name in names:
                    _check_member(name, tmp)
                zf.extractall(tmp, names)
        else:
            with tarfile.open(archive) as tf:
                chosen = [m for m in tf.getmembers() if wanted(m.name)]
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
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
