"""Faults injected into the data path, on tiny files in the real on-disk formats: installs that
would delete or overwrite what they did not create, corrupt / truncated / foreign archives,
files corrupted after they were verified, files a loader cannot decode, and checkpoints that do
not load safely. Each error must be one line that names the file and says what to do."""
from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disentbench.cli import main
from disentbench.datacache import HashStamps
from disentbench.download import (
    ArchiveContents,
    ChecksumError,
    CorruptFileError,
    InstallConflict,
    check_archive,
    publish_tree,
    safe_extract,
)
from disentbench_plugins.datasets import cars3d, chairs, smallnorb
from test_datasets import _analogy_archive, _serve_archive, manifest_of, md5, write_cars3d, write_smallnorb

TINY_CARS = ["--set", "cars3d.resolution=8", "--set", "cars3d.n_test_models=1"]


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture
def cars_archive(tmp_path, monkeypatch):
    """A tiny nips2015-analogy-data.tar.gz of 3 cars, pinned (MD5 + per-file manifest) and served."""
    src = tmp_path / "src"
    write_cars3d(src / "cars3d", n_models=3)
    pins = manifest_of(src / "cars3d")
    monkeypatch.setattr(cars3d, "manifest", lambda: pins)
    archive = _analogy_archive(tmp_path / "nips2015-analogy-data.tar.gz", src)
    _serve_archive(monkeypatch, archive)
    return src, archive


def chairs_tar(path: Path, n_models: int = 3, views: int = 4) -> Path:
    """A tiny rendered_chairs.tar: PNG renders under rendered_chairs/<model>/renders/ (real names)."""
    rng = np.random.default_rng(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for m in range(n_models):
            for k in range(views):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buf, format="PNG")
                info = tarfile.TarInfo(f"rendered_chairs/model{m}/renders/image_{k:03d}_p020_t{90 * k:03d}_r096.png")
                info.size = buf.tell()
                tf.addfile(info, io.BytesIO(buf.getvalue()))
    return path


# -- installs never delete or overwrite what they did not create -----------------------------

def test_install_into_an_existing_folder_adds_files_and_keeps_everything_there(tmp_path, cars_archive):
    src, archive = cars_archive
    root = tmp_path / "data"
    store = root / "cars3d" / "runs" / "cars3d" / "lord" / "seed0-abc"  # a run store inside <root>/cars3d
    store.mkdir(parents=True)
    (store / "record.json").write_text('{"status": "finished"}')
    (root / "cars3d" / "notes.txt").write_text("mine")
    folder = cars3d.Cars3D().fetch(root, progress=False)
    assert (store / "record.json").read_text() == '{"status": "finished"}'
    assert (root / "cars3d" / "notes.txt").read_text() == "mine"
    assert {p.name for p in (src / "cars3d").iterdir()} <= {p.name for p in folder.iterdir()}
    assert not [p for p in root.iterdir() if ".partial-" in p.name]  # no staging folder left


def test_after_deleting_a_corrupt_file_fetch_restores_only_that_file(tmp_path, cars_archive):
    root = tmp_path / "data"
    folder = cars3d.Cars3D().fetch(root, progress=False)
    victim, other = folder / "car_004_mesh.mat", folder / "car_001_mesh.mat"
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(ChecksumError, match=f"{victim}.*delete them and run `disentbench data fetch cars3d`"):
        cars3d.Cars3D().fetch(root, progress=False)
    inode = other.stat().st_ino
    victim.unlink()  # what the message says to do
    cars3d.Cars3D().fetch(root, progress=False)  # installs the missing file from the kept archive
    assert victim.stat().st_size == (tmp_path / "src" / "cars3d" / victim.name).stat().st_size
    assert other.stat().st_ino == inode  # the others were left in place, not replaced


def test_an_install_that_would_overwrite_a_different_file_changes_nothing(tmp_path, cars_archive, capsys):
    root = tmp_path / "data"
    (root / "cars3d").mkdir(parents=True)
    mine = root / "cars3d" / "car_001_mesh.mat"
    mine.write_bytes(b"my own file, another size")
    assert main(["data", "fetch", "cars3d", "--data-dir", str(root), "--quiet"]) == 1
    line = one_line(capsys.readouterr().err)
    assert "InstallConflict" in line and str(mine) in line and "nothing was changed" in line
    assert sorted(p.name for p in (root / "cars3d").iterdir()) == ["car_001_mesh.mat"]
    assert mine.read_bytes() == b"my own file, another size"
    with pytest.raises(InstallConflict):
        cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=1)).load(root, tmp_path / "c", progress=False)


def test_publish_tree_renames_where_nothing_is_and_refuses_a_file_in_the_way(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.bin").write_bytes(b"12")
    assert publish_tree(src, tmp_path / "new") == ["."] and (tmp_path / "new" / "a" / "x.bin").exists()
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.bin").write_bytes(b"12")
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "a").write_text("a file where the archive has a folder")
    with pytest.raises(InstallConflict, match="a file where a folder goes"):
        publish_tree(src, blocked)
    assert (blocked / "a").read_text().startswith("a file") and (src / "a" / "x.bin").exists()


def test_safe_extract_into_a_folder_with_a_run_store_keeps_it(tmp_path):
    archive = chairs_tar(tmp_path / "rendered_chairs.tar", n_models=1, views=2)
    dest = tmp_path / "data" / "chairs"
    (dest / "runs").mkdir(parents=True)
    (dest / "runs" / "record.json").write_text("{}")
    safe_extract(archive, dest)
    assert (dest / "runs" / "record.json").read_text() == "{}"
    assert len(list(dest.glob("rendered_chairs/*/renders/*.png"))) == 2


def test_only_staging_folders_of_dead_extractions_on_this_host_are_cleaned_up(tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = socket.gethostname()
    data = tmp_path / "data"
    kept = {f".chairs.partial-{host}-{os.getpid()}-0123abcd",  # a live extraction (this process)
            f".chairs.partial-elsewhere-{dead}-0123abcd",  # another machine's, on a shared root
            ".chairs.partial-mine"}  # not a name an extraction makes
    for name in kept | {f".chairs.partial-{host}-{dead}-0123abcd"}:
        (data / name).mkdir(parents=True)
        (data / name / "file").write_text("x")
    safe_extract(chairs_tar(tmp_path / "rendered_chairs.tar", n_models=1, views=1), data / "chairs")
    assert {p.name for p in data.iterdir()} == kept | {"chairs"}


def test_run_refuses_an_out_inside_the_data_root(tmp_path, capsys):
    root = tmp_path / "data"
    for out in (root, root / "runs"):
        assert main(["run", "--methods", "lord", "--datasets", "synth3d", "--data-dir", str(root),
                     "--out", str(out), "--no-leaderboard"]) == 2
        line = one_line(capsys.readouterr().err)
        assert "--out" in line and str(root) in line and "outside" in line
    assert not root.exists()  # refused before any work


# -- corrupt, truncated or foreign archives: one line, from `data fetch` and `run` -------------

def _html(path: Path) -> None:
    path.write_bytes(b"<html><body>Quota exceeded</body></html>")


def _cut_mid_member(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2 + 100])


def _cut_at_member_boundary(path: Path) -> None:
    with tarfile.open(path) as tf:
        last = tf.getmembers()[-1]
    path.write_bytes(path.read_bytes()[: last.offset])  # whole members only, no end-of-archive block


@pytest.mark.parametrize("damage,why", [
    (_html, r"it is not a tar or zip archive \(40 bytes, starting b'<html>"),
    (_cut_mid_member, r"(ends in the middle of a member|runs past the end of the file|without the end-of-archive "
                      r"block) \(truncated\)"),
    (_cut_at_member_boundary, r"ends after 11 member\(s\) without the end-of-archive block \(truncated\)"),
], ids=["html-page", "cut-mid-member", "cut-at-member-boundary"])
def test_a_damaged_unpinned_archive_is_one_line_and_installs_nothing(tmp_path, monkeypatch, capsys, damage, why):
    monkeypatch.setattr(chairs, "N_RENDERS", 11)  # one render short would pass: the damage itself is caught
    root = tmp_path / "data"
    archive = chairs_tar(root / "downloads" / "rendered_chairs.tar")
    damage(archive)
    assert main(["data", "fetch", "chairs", "--data-dir", str(root), "--quiet"]) == 1
    line = one_line(capsys.readouterr().err)
    assert f"cannot read {archive}: " in line and re.search(why, line)
    assert "delete it and fetch it again" in line and "disentbench data fetch chairs" in line
    assert not (root / "chairs").exists() and not [p for p in root.iterdir() if ".partial-" in p.name]


def test_an_unpinned_archive_missing_members_is_refused_before_install(tmp_path, monkeypatch):
    monkeypatch.setattr(chairs, "N_RENDERS", 12)  # 3 models × 4 views expected; the file holds 2 models
    root = tmp_path / "data"
    archive = chairs_tar(root / "downloads" / "rendered_chairs.tar", n_models=2)
    with pytest.raises(CorruptFileError, match=r"incomplete: 8 member\(s\) match .*expected at least 12"):
        chairs.Chairs().fetch(root, progress=False)
    assert not (root / "chairs").exists() and archive.exists()
    monkeypatch.setattr(chairs, "N_RENDERS", 8)
    assert chairs.Chairs().fetch(root, progress=False) == root / "chairs" / "rendered_chairs"


def test_archive_contents_check_exact_members_and_sizes(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.avi", b"1234")
        zf.writestr("b.avi", b"12")
    assert check_archive(archive, ArchiveContents(files={"a.avi": 4, "b.avi": None})) == {"a.avi": 4, "b.avi": 2}
    with pytest.raises(CorruptFileError, match="a.avi has 4 bytes, expected 5"):
        check_archive(archive, ArchiveContents(files={"a.avi": 5}))
    with pytest.raises(CorruptFileError, match=r"1 expected member\(s\) missing \(c.avi\)"):
        check_archive(archive, ArchiveContents(files={"c.avi": None}))
    archive.write_bytes(archive.read_bytes()[:-30])  # the central directory is at the end
    with pytest.raises(CorruptFileError, match="not a complete zip archive.*delete it and fetch it again"):
        check_archive(archive)


def test_a_truncated_tar_gz_without_a_checksum_is_one_line(tmp_path, monkeypatch, capsys, cars_archive):
    src, archive = cars_archive
    _serve_archive(monkeypatch, archive)
    monkeypatch.setattr(cars3d, "ARCHIVE", cars3d.Resource(cars3d.ARCHIVE.filename, url=cars3d.ARCHIVE.url))
    root = tmp_path / "data"
    (root / "downloads").mkdir(parents=True)
    placed = root / "downloads" / "nips2015-analogy-data.tar.gz"
    placed.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert main(["data", "fetch", "cars3d", "--data-dir", str(root), "--quiet"]) == 1
    line = one_line(capsys.readouterr().err)
    assert f"cannot read {placed}" in line and "truncated" in line and "delete it and fetch it again" in line
    assert not (root / "cars3d").exists()


def test_run_reports_a_corrupt_archive_in_one_line_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(chairs, "N_RENDERS", 12)
    root = tmp_path / "data"
    archive = chairs_tar(root / "downloads" / "rendered_chairs.tar")
    _html(archive)
    code = main(["run", "--methods", "lord", "--datasets", "chairs", "--metrics", "transfer_error", "--data-dir",
                 str(root), "--out", str(tmp_path / "runs"), "--no-leaderboard", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in out + err
    failed = [line for line in out.splitlines() if "failed" in line and "chairs" in line][0]
    assert f"cannot read {archive}" in failed and "delete it and fetch it again" in failed
    record = json.loads(next((tmp_path / "runs").rglob("record.json")).read_text())
    assert record["status"] == "failed" and record["error"]["type"] == "CorruptFileError"


# -- files corrupted after they were verified (same size, same modification time) -------------

def _corrupt_in_place(path: Path) -> None:
    """Flip bytes in the middle, keeping the size and the modification time."""
    st = path.stat()
    raw = bytearray(path.read_bytes())
    for i in range(len(raw) // 2, len(raw) // 2 + 8):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_fetch_and_info_verify_rehash_a_file_corrupted_in_place(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    write_cars3d(root / "cars3d", n_models=3)
    pins = manifest_of(root / "cars3d")
    monkeypatch.setattr(cars3d, "manifest", lambda: pins)
    assert main(["data", "fetch", "cars3d", "--data-dir", str(root), "--quiet"]) == 0
    assert main(["data", "info", "cars3d", "--data-dir", str(root)] + TINY_CARS) == 0
    capsys.readouterr()
    victim = root / "cars3d" / "car_004_mesh.mat"
    _corrupt_in_place(victim)
    assert main(["data", "info", "cars3d", "--data-dir", str(root)] + TINY_CARS) == 0  # remembered hashes
    assert "data info --verify" in capsys.readouterr().out  # ... and it says how to re-hash
    assert main(["data", "info", "cars3d", "--verify", "--data-dir", str(root)] + TINY_CARS) == 1
    out = capsys.readouterr().out
    assert "CORRUPT" in out and str(victim) in out and "delete them" in out
    assert main(["data", "fetch", "cars3d", "--data-dir", str(root), "--quiet"]) == 1
    line = one_line(capsys.readouterr().err)
    assert str(victim) in line and "disentbench data fetch cars3d" in line


def test_an_unpinned_file_corrupted_in_place_stays_refused_until_replaced(tmp_path):
    f = tmp_path / "sprites_1.mat"
    f.write_bytes(os.urandom(4096))
    good = f.read_bytes()
    stamps = HashStamps(tmp_path / "stamps.json")
    recorded = stamps.verify(f)  # no pin: the SHA-256 is recorded on first use
    stamps.save()
    _corrupt_in_place(f)
    stamps = HashStamps(tmp_path / "stamps.json")  # a later command
    assert stamps.verify(f) == recorded  # remembered: a cheap check cannot see it ...
    with pytest.raises(ChecksumError, match="changed on disk with its size and modification time unchanged"):
        stamps.verify(f, fresh=True)  # ... a re-hash does
    with pytest.raises(ChecksumError, match="it is corrupt"):
        stamps.verify(f, fresh=True)  # asked again in the same command: still refused
    stamps.save()
    with pytest.raises(ChecksumError, match="it is corrupt"):
        HashStamps(tmp_path / "stamps.json").verify(f)  # and it stays refused, even by remembered checks
    f.write_bytes(good)  # replaced (new modification time)
    assert HashStamps(tmp_path / "stamps.json").verify(f, fresh=True) == recorded


def test_a_cache_is_built_only_from_files_hashed_for_that_build(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_cars3d(root / "cars3d", n_models=3)
    pins = manifest_of(root / "cars3d")
    monkeypatch.setattr(cars3d, "manifest", lambda: pins)
    cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=1)).load(root, tmp_path / "c", progress=False)
    _corrupt_in_place(root / "cars3d" / "car_001_mesh.mat")
    with pytest.raises(ChecksumError, match="car_001_mesh.mat"):  # a new preprocessing: a new build
        cars3d.Cars3D(cars3d.Cars3DConfig(resolution=16, n_test_models=1)).load(root, tmp_path / "c", progress=False)
    assert len(list((tmp_path / "c").glob("cars3d-*"))) == 1


@pytest.mark.parametrize("damage", ["truncated-array", "bad-meta"])
def test_a_damaged_dataset_cache_is_moved_aside_and_rebuilt(tmp_path, monkeypatch, capsys, damage):
    root = tmp_path / "data"
    write_cars3d(root / "cars3d", n_models=3)
    pins = manifest_of(root / "cars3d")
    monkeypatch.setattr(cars3d, "manifest", lambda: pins)
    ds = cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=1))
    first = ds.load(root, tmp_path / "c", progress=False)
    entry = next((tmp_path / "c").glob("cars3d-*"))
    if damage == "truncated-array":
        images = entry / "images.npy"
        images.write_bytes(images.read_bytes()[:-100])
    else:
        (entry / "meta.json").write_text('{"arrays": ["images"')
    again = ds.load(root, tmp_path / "c", progress=False)
    assert np.array_equal(again.train.images, first.train.images)
    err = capsys.readouterr().err
    line = one_line(err)
    assert f"dataset cache {entry} cannot be read" in line and "rebuilt" in line
    kept = [p for p in (tmp_path / "c").iterdir() if ".damaged-" in p.name]
    assert len(kept) == 1 and str(kept[0]) in line  # kept for inspection, not deleted


# -- a loader that cannot decode a file names it ---------------------------------------------

def test_cars3d_names_a_mat_file_it_cannot_decode(tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    write_cars3d(root / "cars3d", n_models=3)
    victim = root / "cars3d" / "car_004_mesh.mat"
    victim.write_bytes(b"MATLAB 5.0 MAT-file" + os.urandom(300))
    monkeypatch.setattr(cars3d, "manifest", lambda: manifest_of(root / "cars3d"))  # the checksums agree
    with pytest.raises(CorruptFileError) as exc:
        cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=1)).load(root, tmp_path / "c", progress=False)
    line = one_line(str(exc.value))
    assert f"cannot read {victim}" in line and "delete it and run `disentbench data fetch cars3d`" in line
    assert not list((tmp_path / "c").glob("cars3d-*"))  # nothing cached


def test_smallnorb_names_a_file_that_is_not_gzip(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_smallnorb(root / "smallnorb")
    victim = root / "smallnorb" / "smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat.gz"
    victim.write_bytes(gzip.compress(b"\x54\x4c\x3d\x1e" + b"\x00" * 30)[:-12])  # cut: the stream ends early
    monkeypatch.setattr(smallnorb, "MD5", {name: md5(root / "smallnorb" / name) for name in smallnorb.MD5})
    with pytest.raises(CorruptFileError, match=f"cannot read {victim}: .*delete it and run `disentbench data fetch"):
        smallnorb.SmallNorb(smallnorb.SmallNorbConfig(resolution=8)).load(root, tmp_path / "c", progress=False)


def test_chairs_names_a_png_it_cannot_decode(tmp_path, monkeypatch):
    monkeypatch.setattr(chairs, "N_RENDERS", 12)
    root = tmp_path / "data"
    safe_extract(chairs_tar(tmp_path / "rendered_chairs.tar"), root / "chairs")
    victim = sorted((root / "chairs").rglob("*.png"))[5]
    victim.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(CorruptFileError, match=f"cannot read {victim}: "):
        chairs.Chairs(chairs.ChairsConfig(resolution=8, crop=0, n_test_models=1)).load(root, tmp_path / "c",
                                                                                        progress=False)


# -- checkpoints and weights that do not load safely ---------------------------------------

class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file if it were ever unpickled


def _damaged_checkpoints(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    files = {"truncated": good.read_bytes()[:200], "empty": b"", "html": b"<html>quota</html>"}
    out = {}
    for name, raw in files.items():
        out[name] = tmp_path / f"{name}.pt"
        out[name].write_bytes(raw)
    out["malicious"] = tmp_path / "malicious.pt"
    torch.save({"w": _Payload(tmp_path / "pwned")}, out["malicious"])
    out["plain-pickle"] = tmp_path / "plain.pkl"
    out["plain-pickle"].write_bytes(pickle.dumps({"w": _Payload(tmp_path / "pwned")}))
    out["zip-not-torch"] = tmp_path / "other.pt"
    with zipfile.ZipFile(out["zip-not-torch"], "w") as zf:
        zf.writestr("x.txt", "hello")
    raw = bytearray(good.read_bytes())
    at = raw.find(b"data.pkl") + 60
    raw[at : at + 30] = b"\xff" * 30  # damage inside the pickled structure
    out["damaged-pickle"] = tmp_path / "damaged.pt"
    out["damaged-pickle"].write_bytes(bytes(raw))
    return out


def test_checkpoint_errors_name_the_file_and_never_suggest_an_unsafe_load(tmp_path):
    from disentbench.weights import CheckpointError, load_checkpoint

    for kind, path in _damaged_checkpoints(tmp_path).items():
        with pytest.raises(CheckpointError) as exc:
            load_checkpoint(path)
        line = one_line(str(exc.value))
        assert f"cannot load weights {path}:" in line and "delete it" in line, kind
        assert "False" not in line and "trusted source" not in line, kind
        assert isinstance(exc.value, pickle.UnpicklingError) and isinstance(exc.value, RuntimeError)
    assert not (tmp_path / "pwned").exists()


def test_a_damaged_trained_state_is_one_line_naming_it(tmp_path):
    from disentbench.method import BaseMethod
    from disentbench.weights import CheckpointError

    paths = _damaged_checkpoints(tmp_path)
    method = BaseMethod.__new__(BaseMethod)
    torch.nn.Module.__init__(method)
    for kind in ("truncated", "malicious"):
        with pytest.raises(CheckpointError, match=f"cannot load trained state {paths[kind]}: .*run again") as exc:
            method.load(paths[kind])
        assert "False" not in str(exc.value)
    assert not (tmp_path / "pwned").exists()


def test_a_device_error_while_loading_is_not_blamed_on_the_file(tmp_path, monkeypatch):
    from disentbench.weights import torch_load_safely

    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(1)}, good)

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch, "load", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):  # as raised: the file is fine, nobody is told to delete it
        torch_load_safely(good)
