"""Downloads (atomic, resumable, verified), the archive-extraction guard and the dataset cache,
against a local HTTP server on 127.0.0.1 and files made here: nothing touches the network."""
from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from disentbench import datacache
from disentbench.contracts import Unavailable
from disentbench.datacache import ArrayCache, HashStamps
from disentbench.download import (
    ChecksumError,
    IncompleteDownload,
    Resource,
    UnsafeArchiveError,
    download,
    safe_extract,
    verify,
)
from disentbench.images import resize_images
from disentbench_plugins.datasets.common import rank_by_hash

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state = self.server.state
        state["requests"].append((self.path, self.headers.get("Range")))
        data = state["files"].get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, wanted = 0, self.headers.get("Range")
        if wanted and not state["ignore_range"]:
            start = int(re.match(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = state.pop("cut_after", None)
        self.wfile.write(body if cut is None else body[:cut])  # a cut ends the connection early

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    """A local server for ``/file.bin``; ``state`` controls range support and cut connections."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = {"files": {"/file.bin": PAYLOAD}, "requests": [], "ignore_range": False}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}/file.bin"
    httpd.shutdown()
    httpd.server_close()


# -- verify / download ----------------------------------------------------------------------

def test_verify_checks_size_sha256_prefix_and_md5(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(PAYLOAD)
    verify(f, SHA, len(PAYLOAD), md5=MD5)
    verify(f, SHA[:8])  # a published prefix (torchvision file names) is enough
    with pytest.raises(ChecksumError, match="bytes; expected"):
        verify(f, SHA, len(PAYLOAD) + 1)
    with pytest.raises(ChecksumError, match="SHA-256"):
        verify(f, "0" * 64)
    with pytest.raises(ChecksumError, match="MD5"):
        verify(f, None, md5="0" * 32)


def test_download_is_verified_and_atomic(tmp_path, server):
    state, url = server
    dest = download(url, tmp_path / "out.bin", sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "out.bin.part").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # no lock or partial file left


def test_a_corrupt_download_is_never_kept(tmp_path, server):
    state, url = server
    state["files"]["/file.bin"] = PAYLOAD[:-1] + b"\x00"
    with pytest.raises(ChecksumError):
        download(url, tmp_path / "out.bin", sha256=SHA, progress=False)
    assert not (tmp_path / "out.bin").exists() and not (tmp_path / "out.bin.part").exists()


def test_cut_connection_keeps_the_partial_file_and_the_next_call_resumes(tmp_path, server):
    state, url = server
    state["cut_after"] = 30000
    with pytest.raises(IncompleteDownload, match="resumes"):
        download(url, tmp_path / "out.bin", sha256=SHA, progress=False)
    part = tmp_path / "out.bin.part"
    assert part.stat().st_size == 30000 and not (tmp_path / "out.bin").exists()
    download(url, tmp_path / "out.bin", sha256=SHA, progress=False)
    assert (tmp_path / "out.bin").read_bytes() == PAYLOAD
    assert state["requests"][-1][1] == "bytes=30000-"  # only the rest was requested


def test_resume_when_the_server_ignores_ranges_starts_over(tmp_path, server):
    state, url = server
    state["ignore_range"] = True
    (tmp_path / "out.bin.part").write_bytes(b"garbage that is not a prefix")
    download(url, tmp_path / "out.bin", sha256=SHA, progress=False)
    assert (tmp_path / "out.bin").read_bytes() == PAYLOAD


def test_a_stale_partial_file_is_discarded_and_fetched_again(tmp_path, server):
    state, url = server
    (tmp_path / "out.bin.part").write_bytes(b"x" * 1000)  # same length prefix, wrong bytes
    download(url, tmp_path / "out.bin", sha256=SHA, progress=False)
    assert (tmp_path / "out.bin").read_bytes() == PAYLOAD
    assert [r[1] for r in state["requests"]] == ["bytes=1000-", None]


def test_a_complete_partial_file_is_finished_without_refetching(tmp_path, server):
    state, url = server
    (tmp_path / "out.bin.part").write_bytes(PAYLOAD)  # interrupted between the last byte and the rename
    download(url, tmp_path / "out.bin", sha256=SHA, progress=False)  # the server answers 416
    assert (tmp_path / "out.bin").read_bytes() == PAYLOAD


def test_resource_ensure_downloads_from_file_urls_and_reports_what_to_do(tmp_path, monkeypatch):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    res = Resource("sub/f.bin", url=src.as_uri(), sha256=SHA, manual="ask a colleague")
    with pytest.raises(Unavailable) as exc:  # tests run with $DISENTBENCH_OFFLINE=1
        res.ensure(tmp_path / "root", progress=False)
    message = str(exc.value)
    assert str(tmp_path / "root" / "sub" / "f.bin") in message and src.as_uri() in message
    assert "DISENTBENCH_OFFLINE" in message and SHA in message and "ask a colleague" in message
    monkeypatch.delenv("DISENTBENCH_OFFLINE")
    path = res.ensure(tmp_path / "root", progress=False)
    assert path.read_bytes() == PAYLOAD
    path.write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="delete it and fetch it again"):
        res.ensure(tmp_path / "root", progress=False)


def test_resource_ensure_turns_network_failures_into_unavailable(tmp_path, monkeypatch, server):
    monkeypatch.delenv("DISENTBENCH_OFFLINE")
    state, url = server
    with pytest.raises(Unavailable, match="404"):
        Resource("f.bin", url=url.replace("file.bin", "nope.bin")).ensure(tmp_path, progress=False)
    state["cut_after"] = 100
    with pytest.raises(Unavailable, match="is kept; running again resumes it"):
        Resource("f.bin", url=url, md5=MD5).ensure(tmp_path, progress=False)
    assert Resource("f.bin", url=url, md5=MD5).ensure(tmp_path, progress=False).read_bytes() == PAYLOAD


# -- the extraction guard -------------------------------------------------------------------

def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return path


def _link(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize("bad", [
    ("../evil.txt", b"x"),
    ("data/../../evil.txt", b"x"),
    ("/tmp/disentbench-evil.txt", b"x"),
    _link("data/link", "../../evil.txt"),
    _link("data/abs", "/etc/passwd"),
    _link("data/hard", "../evil.txt", hard=True),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out"])
def test_extraction_refuses_members_escaping_the_target(tmp_path, bad):
    archive = _tar(tmp_path / "a.tar.gz", [("data/ok.txt", b"fine"), bad])
    dest = tmp_path / "out" / "dest"
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        safe_extract(archive, dest)
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []  # no staging folder left either
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()
    assert not Path("/tmp/disentbench-evil.txt").exists()


def test_extraction_of_a_good_archive_with_a_member_filter(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [("data/cars/a.mat", b"A"), ("data/cars/b.mat", b"B"),
                                            _link("data/cars/c.mat", "a.mat"), ("data/other.mat", b"O")])
    dest = safe_extract(archive, tmp_path / "dest", members=lambda n: n.startswith("data/cars/"))
    assert sorted(p.name for p in (dest / "data" / "cars").iterdir()) == ["a.mat", "b.mat", "c.mat"]
    assert (dest / "data" / "cars" / "c.mat").read_bytes() == b"A" and not (dest / "data" / "other.mat").exists()
    safe_extract(archive, dest, members=["data/other.mat"])  # adds to the earlier extraction, deletes nothing
    assert sorted(p.name for p in (dest / "data").iterdir()) == ["cars", "other.mat"]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["a.tar.gz", "dest"]  # no staging folder left


def test_zip_extraction_refuses_traversal(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../evil.txt", "x")
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "dest").exists()


# -- the preprocessed-array cache -----------------------------------------------------------

def test_array_cache_publishes_only_complete_entries(tmp_path):
    cache = ArrayCache(tmp_path, "toy", "k1")
    with pytest.raises(RuntimeError):
        with cache.build() as w:
            w.allocate("images", (4, 2, 2, 1))[:] = 7
            raise RuntimeError("preprocessing failed")
    assert not cache.exists() and list(tmp_path.iterdir()) == []
    with cache.build() as w:
        w.allocate("images", (4, 2, 2, 1))[:] = 7
        w.save("classes", np.arange(4))
        w.meta = {"splits": {"train": [0, 3]}}
    loaded = cache.load()
    assert isinstance(loaded.arrays["images"], np.memmap) and loaded.arrays["images"].dtype == np.uint8
    assert int(loaded.arrays["images"].sum()) == 7 * 16 and loaded.meta == {"splits": {"train": [0, 3]}}
    loaded.arrays["images"][0] = 0  # copy-on-write: the cache on disk is untouched
    assert int(cache.load().arrays["images"].sum()) == 7 * 16
    assert ArrayCache(tmp_path, "toy", "k2").exists() is False


def test_hash_stamps_hash_once_and_again_after_a_change(tmp_path, monkeypatch):
    f = tmp_path / "f.bin"
    f.write_bytes(PAYLOAD)
    calls = []
    real = datacache.file_digests
    monkeypatch.setattr(datacache, "file_digests", lambda *a, **k: calls.append(1) or real(*a, **k))
    stamps = HashStamps(tmp_path / "stamps.json")
    assert stamps.verify(f, sha256=SHA, md5=MD5) == SHA
    stamps.save()
    assert HashStamps(tmp_path / "stamps.json").verify(f, sha256=SHA) == SHA
    assert len(calls) == 1  # remembered across instances
    f.write_bytes(PAYLOAD[:-1])
    with pytest.raises(ChecksumError, match="expected"):
        HashStamps(tmp_path / "stamps.json").verify(f, sha256=SHA)
    assert len(calls) == 2


def test_resize_images_area_averages():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 12, 12, 3), dtype=np.uint8)
    out = resize_images(x, 4)  # integer factor: exact block means, rounded
    expected = (x.reshape(3, 4, 3, 4, 3, 3).astype(float).mean(axis=(2, 4)) + 0.5).astype(np.uint8)
    assert out.dtype == np.uint8 and np.array_equal(out, expected)
    flat = np.full((2, 9, 9, 1), 200, dtype=np.uint8)
    assert np.array_equal(resize_images(flat, 6), np.full((2, 6, 6, 1), 200, np.uint8))  # 1.5×: box filter
    stripes = np.zeros((1, 9, 9, 1), dtype=np.uint8)
    stripes[:, :, ::3] = 255  # one bright column in three: an area average keeps the mean brightness
    assert abs(resize_images(stripes, 6).mean() - 85) < 2
    assert resize_images(x, (6, 3)).shape == (3, 6, 3, 3)
    row = np.array([[[[30], [90], [150]]]], dtype=np.uint8)  # 1×3 → 1×2: pixel 1 is shared half and half
    out = resize_images(row, (1, 2))[0, 0, :, 0]
    assert out.tolist() == [int((30 + 0.5 * 90) / 1.5 + 0.5), int((0.5 * 90 + 150) / 1.5 + 0.5)]


def test_rank_by_hash_is_deterministic_and_stable_under_additions():
    names = [f"m{i}" for i in range(50)]
    a = rank_by_hash(names, 0)
    assert a == rank_by_hash(list(reversed(names)), 0) and a != rank_by_hash(names, 1)
    b = [n for n in rank_by_hash(names + ["new"], 0) if n != "new"]
    assert a == b
