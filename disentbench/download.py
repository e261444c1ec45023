"""Downloads that are atomic, resumable, shown with progress and verified by SHA-256 before use,
plus archive extraction that refuses members escaping the target directory."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from disentbench.contracts import Unavailable

CHUNK = 1 << 20


class ChecksumError(Exception):
    """A file's SHA-256 (or size) is not the pinned one."""


class UnsafeArchiveError(Exception):
    """An archive member would be written outside the extraction directory."""


def sha256_file(path: Path, *, progress: bool = False) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    bar = _bar(total, f"sha256 {path.name}", progress)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
            bar.update(len(block))
    bar.close()
    return digest.hexdigest()


def verify(path: Path, sha256: str | None, size: int | None = None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the pinned size and SHA-256 (full or prefix)."""
    path = Path(path)
    if size is not None and path.stat().st_size != size:
        raise ChecksumError(f"{path} has {path.stat().st_size} bytes; expected {size}")
    if sha256:
        actual = sha256_file(path)
        if not actual.startswith(sha256.lower()):
            raise ChecksumError(f"{path} has SHA-256 {actual}; expected {sha256}")


def _bar(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled, leave=False)


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``url`` to ``dest``: into ``dest.part`` (resumed with an HTTP Range request when a
    partial file exists), verified, then renamed. A file that fails verification is deleted."""
    dest = Path(dest)
    if dest.exists():
        verify(dest, sha256, size)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "disentbench"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = getattr(response, "status", 200)
        if offset and status != 206:  # server ignored the range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = (int(length) + offset) if length is not None else size
        mode = "ab" if offset else "wb"
        with part.open(mode) as f, _bar(total, dest.name, progress) as bar:
            bar.update(offset)
            shutil.copyfileobj(_Tee(response, bar), f, CHUNK)
    try:
        verify(part, sha256, size)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


class _Tee:
    def __init__(self, response, bar) -> None:
        self.response, self.bar = response, bar

    def read(self, n: int = -1) -> bytes:
        block = self.response.read(n)
        self.bar.update(len(block))
        return block


@dataclass(frozen=True)
class Resource:
    """One file a dataset or weight needs: where it comes from and how to check it."""

    filename: str  # relative to its root directory
    url: str = ""
    sha256: str | None = None
    size: int | None = None
    manual: str = ""  # how to get it by hand (behind a login, flaky host, ...)

    def ensure(self, root: Path, *, progress: bool = True, allow_download: bool = True) -> Path:
        """The verified local file: present already, or downloaded, or an :class:`Unavailable` error
        saying which file to put where and how to fetch it."""
        path = Path(root) / self.filename
        if path.exists():
            try:
                verify(path, self.sha256, self.size)
            except ChecksumError as exc:
                raise ChecksumError(
                    f"{exc}. The file is corrupt or incomplete: delete it and fetch it again{self._how(path)}"
                ) from None
            return path
        if self.url and allow_download:
            try:
                return download(self.url, path, sha256=self.sha256, size=self.size, progress=progress)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                raise Unavailable(
                    f"missing file {path} and the download from {self.url} failed ({exc}).{self._how(path)}"
                ) from None
        raise Unavailable(f"missing file {path}.{self._how(path)}")

    def _how(self, path: Path) -> str:
        parts = [f" Put the file at {path}"]
        if self.sha256:
            parts.append(f" (SHA-256 {self.sha256})")
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


def safe_extract(archive: Path, dest: Path, members: list[str] | None = None) -> Path:
    """Extract a tar or zip archive into ``dest``, refusing absolute paths, ``..`` and links that
    leave the tree. Extraction goes to a temporary directory renamed into place when complete."""
    archive, dest = Path(archive), Path(dest)
    tmp = dest.with_name(dest.name + ".extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                names = [n for n in zf.namelist() if members is None or n in members]
                for name in names:
                    _check_member(name, tmp)
                zf.extractall(tmp, names)
        else:
            with tarfile.open(archive) as tf:
                chosen = [m for m in tf.getmembers() if members is None or m.name in members]
                for member in chosen:
                    _check_member(member.name, tmp)
                    if member.issym() or member.islnk():
                        link_base = tmp / Path(member.name).parent if member.issym() else tmp
                        if os.path.isabs(member.linkname) or not (link_base / member.linkname).resolve().is_relative_to(tmp.resolve()):
                            raise UnsafeArchiveError(
                                f"archive member {member.name!r} links to {member.linkname!r} outside {dest}; refusing to extract"
                            )
                try:
                    tf.extractall(tmp, members=chosen, filter="data")
                except tarfile.FilterError as exc:
                    raise UnsafeArchiveError(f"refusing to extract {archive}: {exc}") from None
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
