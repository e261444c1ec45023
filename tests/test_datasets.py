"""The real-dataset plugins on tiny files written here in each real on-disk format (MATLAB v5 and
v7.3, NORB binary matrices, PNG/JPEG/AVI in tar and zip archives), through the same code paths
a user's download takes; plus one test on the real Cars3D mirror when it is present."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from disentbench.cli import main
from disentbench.contracts import Unavailable
from disentbench.download import ChecksumError, Resource, UnsafeArchiveError
from disentbench.images import center_crop, pad_to_square, resize_images
from disentbench.plugins import load_registries
from disentbench_plugins.datasets import cars3d, celeba, chairs, kth, market1501, smallnorb, sprites

REAL_CARS3D = Path(__file__).resolve().parents[2] / "shared" / "data" / "cars3d"
RNG = np.random.default_rng(0)


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- Cars3D: MATLAB v5 files with Cars3D's keys ------------------------------------------

def write_cars3d(folder: Path, n_models: int = 6, side: int = 16) -> dict[str, np.ndarray]:
    """``list.txt`` + ``car_NNN_mesh.mat`` as in the real folder (compressed MATLAB v5)."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    names, ims = [], {}
    for k in range(n_models):
        name = f"car_{k * 3 + 1:03d}_mesh"
        im = RNG.integers(0, 256, size=(side, side, 3, 24, 4), dtype=np.uint8)
        savemat(folder / f"{name}.mat", {"im": im, "mask": (im[:, :, 0] > 128).astype(np.uint8),
                                        "YAW_LIST": np.arange(0, 360, 15, dtype=np.uint16)[None],
                                        "PITCH_LIST": np.array([[0, 6, 12, 18]], dtype=np.uint8)},
                do_compression=True)
        names.append(name)
        ims[name] = im
    (folder / "list.txt").write_text("\n".join(names) + "\n")
    return ims


def manifest_of(folder: Path) -> dict[str, dict[str, str]]:
    return {p.name: {"sha256": sha256(p)} for p in folder.iterdir()}


@pytest.fixture
def cars(tmp_path, monkeypatch):
    root = tmp_path / "data"
    ims = write_cars3d(root / "cars3d")
    pins = manifest_of(root / "cars3d")
    monkeypatch.setattr(cars3d, "manifest", lambda: pins)
    return root, ims


def test_cars3d_loads_splits_and_looks_up_ground_truth(cars, tmp_path):
    root, ims = cars
    ds = cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=2))
    data = ds.load(root, tmp_path / "cache", progress=False)
    train, test = data.train, data.test
    assert train.images.shape == (4 * 96, 8, 8, 3) and test.images.shape == (2 * 96, 8, 8, 3)
    assert train.images.dtype == np.uint8 and set(train.classes).isdisjoint(test.classes)
    assert train.factor_names == ("azimuth", "elevation") and train.factor_sizes == (24, 4)
    names = sorted(ims)
    assert data.info["test_models"] == [names[c] for c in sorted(set(test.classes.tolist()))]
    assert data.info["azimuths_deg"][:3] == [0, 15, 30] and "verified" in data.info["checksums"]
    for split in (train, test):
        for cls in np.unique(split.classes)[:2]:
            idx = split.lookup(np.array([cls, cls]), np.array([[5, 3], [23, 0]]))
            for i, (a, e) in zip(idx, [(5, 3), (23, 0)]):
                expected = resize_images(ims[names[cls]][:, :, :, a, e][None], 8)[0]
                assert np.array_equal(split.images[i], expected)


def test_cars3d_split_is_deterministic_and_seeded(cars, tmp_path):
    root, _ = cars
    load = lambda seed: cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=2, split_seed=seed)).load(
        root, tmp_path / "cache", progress=False).info["test_models"]
    assert load(0) == load(0)
    assert any(load(0) != load(s) for s in (1, 2, 3))


def test_cars3d_cached_load_reads_no_source_file(cars, tmp_path, monkeypatch):
    root, _ = cars
    ds = cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=2))
    first = ds.load(root, tmp_path / "cache", progress=False)
    monkeypatch.setattr(cars3d.Cars3D, "build", lambda *a, **k: pytest.fail("rebuilt a cached dataset"))
    import scipy.io
    monkeypatch.setattr(scipy.io, "loadmat", lambda *a, **k: pytest.fail("read a .mat file"))
    again = ds.load(root, tmp_path / "cache", progress=False)
    assert isinstance(again.train.images.base, np.memmap) or isinstance(again.train.images, np.memmap)
    assert np.array_equal(first.test.images, again.test.images)
    other = cars3d.Cars3D(cars3d.Cars3DConfig(resolution=16, n_test_models=2))  # new preprocessing, new key
    with pytest.raises(pytest.fail.Exception, match="rebuilt"):
        other.load(root, tmp_path / "cache", progress=False)


def test_cars3d_corrupt_file_is_refused_and_nothing_cached(cars, tmp_path):
    root, _ = cars
    victim = root / "cars3d" / "car_004_mesh.mat"
    victim.write_bytes(victim.read_bytes()[:-10])  # truncated
    with pytest.raises(ChecksumError, match="1 file.*car_004_mesh.mat.*delete them and run `disentbench data fetch cars3d`"):
        cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=2)).load(root, tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("cars3d-*"))


def test_cars3d_pinned_manifest_rejects_other_files(tmp_path):
    root = tmp_path / "data"
    write_cars3d(root / "cars3d", n_models=2)
    with pytest.raises(ChecksumError, match="3 file.s. do not match.*car_001_mesh.mat has SHA-256"):  # real pins
        cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=1)).load(root, tmp_path / "cache", progress=False)


def test_cars3d_missing_data_says_what_to_put_where(tmp_path):
    with pytest.raises(Unavailable) as exc:
        cars3d.Cars3D().load(tmp_path / "empty", tmp_path / "cache", progress=False)
    message = str(exc.value)
    assert str(tmp_path / "empty" / "cars3d") in message and cars3d.ARCHIVE_URL in message
    assert "disentbench data fetch cars3d" in message and "DISENTBENCH_OFFLINE" in message
    (tmp_path / "partial" / "cars3d").mkdir(parents=True)
    (tmp_path / "partial" / "cars3d" / "list.txt").write_text("car_001_mesh\ncar_002_mesh\n")
    with pytest.raises(Unavailable, match="2 file.s. are missing .car_001_mesh.mat, car_002_mesh.mat"):
        cars3d.Cars3D().load(tmp_path / "partial", tmp_path / "cache", progress=False)


def _analogy_archive(path: Path, src: Path, extra: list[tuple[str, bytes]] = ()) -> Path:
    """A tiny nips2015-analogy-data.tar.gz: data/cars/, data/sprites/ and data/shapes48.mat."""
    with tarfile.open(path, "w:gz") as tf:
        tf.add(src / "cars3d", arcname="data/cars")
        if (src / "sprites").exists():
            tf.add(src / "sprites", arcname="data/sprites")
        info = tarfile.TarInfo("data/shapes48.mat")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"MATL"))
        for name, payload in extra:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    return path


def _serve_archive(monkeypatch, archive: Path, md5sum: str | None = None) -> None:
    resource = Resource(cars3d.ARCHIVE.filename, url=archive.as_uri(), md5=md5sum or md5(archive))
    monkeypatch.setattr(cars3d, "ARCHIVE", resource)
    monkeypatch.setattr(sprites, "ARCHIVE", resource)
    monkeypatch.delenv("DISENTBENCH_OFFLINE", raising=False)


def test_cars3d_fetch_downloads_verifies_and_installs_the_mirror_layout(tmp_path, monkeypatch):
    src = tmp_path / "src"
    ims = write_cars3d(src / "cars3d")
    write_sprites(src / "sprites")
    pins = manifest_of(src / "cars3d")
    monkeypatch.setattr(cars3d, "manifest", lambda: pins)
    _serve_archive(monkeypatch, _analogy_archive(tmp_path / "nips2015-analogy-data.tar.gz", src))
    root = tmp_path / "data"
    folder = cars3d.Cars3D().fetch(root, progress=False)
    assert folder == root / "cars3d" and sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in (src / "cars3d").iterdir())
    assert (root / "sprites" / "sprites_splits.mat").exists()  # the same archive holds Sprites
    assert (root / "downloads" / "nips2015-analogy-data.tar.gz").exists()
    assert not (root / ".nips2015-analogy-data").exists() and not (root / "shapes48.mat").exists()
    data = cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=2)).load(root, tmp_path / "c", progress=False)
    assert len(data.train) + len(data.test) == len(ims) * 96


def test_load_fetches_when_missing_and_a_corrupt_archive_installs_nothing(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_cars3d(src / "cars3d", n_models=3)
    pins = manifest_of(src / "cars3d")
    monkeypatch.setattr(cars3d, "manifest", lambda: pins)
    archive = _analogy_archive(tmp_path / "nips2015-analogy-data.tar.gz", src)
    _serve_archive(monkeypatch, archive, md5sum="0" * 32)
    root = tmp_path / "data"
    with pytest.raises(ChecksumError, match="is corrupt and was deleted.*MD5"):
        cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=1)).load(root, tmp_path / "c", progress=False)
    assert not (root / "cars3d").exists() and not (root / "downloads" / "nips2015-analogy-data.tar.gz").exists()
    _serve_archive(monkeypatch, archive)
    data = cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=1)).load(root, tmp_path / "c", progress=False)
    assert len(data.test) == 96


def test_an_archive_placed_by_hand_is_verified_and_installed(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_cars3d(src / "cars3d", n_models=3)
    pins = manifest_of(src / "cars3d")
    monkeypatch.setattr(cars3d, "manifest", lambda: pins)
    root = tmp_path / "data"
    root.mkdir()
    archive = _analogy_archive(root / "nips2015-analogy-data.tar.gz", src)  # dropped into the data root
    _serve_archive(monkeypatch, archive)
    monkeypatch.setenv("DISENTBENCH_OFFLINE", "1")
    cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=1)).load(root, tmp_path / "c", progress=False)
    assert (root / "cars3d" / "list.txt").exists()
    archive.write_bytes(archive.read_bytes()[:-100])
    (root / "cars3d" / "list.txt").unlink()
    with pytest.raises(ChecksumError, match="archive is corrupt"):
        cars3d.Cars3D().load(root, tmp_path / "c", progress=False)


def test_an_archive_escaping_the_data_root_is_refused(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_cars3d(src / "cars3d", n_models=2)
    archive = _analogy_archive(tmp_path / "nips2015-analogy-data.tar.gz", src,
                               extra=[("data/cars/../../../evil.txt", b"x")])
    _serve_archive(monkeypatch, archive)
    with pytest.raises(UnsafeArchiveError):
        cars3d.Cars3D().fetch(tmp_path / "data", progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / "cars3d").exists()


@pytest.mark.skipif(not REAL_CARS3D.is_dir(), reason="the real Cars3D mirror is not on this machine")
def test_real_cars3d_mirror(tmp_path):
    """The real mirror, through the code path a user's download takes (layout, manifest, cache)."""
    from scipy.io import loadmat

    data = cars3d.Cars3D(cars3d.Cars3DConfig(resolution=32)).load(REAL_CARS3D.parent, tmp_path / "cache",
                                                                   progress=False)
    train, test = data.train, data.test
    assert len(train) + len(test) == 183 * 96 and data.info["n_models"] == 183
    assert len(np.unique(train.classes)) == 163 and len(np.unique(test.classes)) == 20
    assert len(data.info["test_models"]) == 20 and data.info["checksums"].startswith("verified: 184")
    models = [line.strip() for line in (REAL_CARS3D / "list.txt").read_text().split()]
    for split, picks in ((train, [(0, 0, 0), (5, 23, 3)]), (test, [(1, 12, 2), (19, 7, 1)])):
        classes = np.unique(split.classes)
        for k, a, e in picks:
            cls = int(classes[k])
            idx = split.lookup(np.array([cls]), np.array([[a, e]]))[0]
            im = loadmat(REAL_CARS3D / f"{models[cls]}.mat", variable_names=["im"])["im"]
            assert np.array_equal(split.images[idx], resize_images(im[:, :, :, a, e][None], 32)[0])
    again = cars3d.Cars3D(cars3d.Cars3DConfig(resolution=32)).load(REAL_CARS3D.parent, tmp_path / "cache",
                                                                    progress=False)
    assert again.info["cache_key"] == data.info["cache_key"] and np.array_equal(again.test.images, test.images)


# -- Sprites: MATLAB v7.3 (HDF5) files ---------------------------------------------------

def write_sprites(folder: Path, n_chars: int = 4, frames=(1, 2)) -> dict[tuple[int, int], np.ndarray]:
    """``sprites_<n>.mat`` (MATLAB v7.3: HDF5 with a 512-byte header, a ``sprites`` cell of 21
    object references to (frames, 10800) arrays) and ``sprites_splits.mat`` (MATLAB v5)."""
    import h5py
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for n in range(1, n_chars + 1):
        path = folder / f"sprites_{n}.mat"
        with h5py.File(path, "w", userblock_size=512) as f:
            refs = []
            frame = 0
            for a in range(21):
                count = frames[a % len(frames)]
                images = RNG.integers(0, 256, size=(count, 60, 60, 3), dtype=np.uint8)
                if a < 20:
                    for img in images:
                        truth[(n, frame)] = img
                        frame += 1
                flat = (images.transpose(0, 3, 2, 1).reshape(count, -1) / 255.0)  # MATLAB column-major
                ds = f.create_dataset(f"#refs#/a{a}", data=flat)
                ds.attrs["MATLAB_class"] = np.bytes_("double")
                refs.append(ds.ref)
            cell = f.create_dataset("sprites", (21, 1), dtype=h5py.ref_dtype)
            for a, ref in enumerate(refs):
                cell[a, 0] = ref
            cell.attrs["MATLAB_class"] = np.bytes_("cell")
        header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Feb 23 2015 HDF5 schema 1.00 ."
        with open(path, "r+b") as f:
            f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")
    savemat(folder / "sprites_splits.mat", {"trainidx": np.array([[1, 2]], dtype=np.double),
                                            "testidx": np.array([[3, 4]], dtype=np.double)})
    return truth


def test_sprites_v73_files_split_and_lookup(tmp_path):
    root = tmp_path / "data"
    truth = write_sprites(root / "sprites")
    data = sprites.Sprites(sprites.SpritesConfig(resolution=60)).load(root, tmp_path / "cache", progress=False)
    n_frames = 30  # 20 animations alternating 1 and 2 frames
    assert data.info["frames_per_character"] == n_frames
    assert set(data.train.classes) == {1} and set(data.test.classes) == {3}  # every other character
    assert data.train.factor_sizes == (n_frames,) and data.train.extras["animation"].max() == 19
    for split, cls in ((data.train, 1), (data.test, 3)):
        for frame in (0, 7, n_frames - 1):
            idx = split.lookup(np.array([cls]), np.array([[frame]]))[0]
            assert np.array_equal(split.images[idx], truth[(cls, frame)])
    every = sprites.Sprites(sprites.SpritesConfig(resolution=32, every_other_character=False)).load(
        root, tmp_path / "cache", progress=False)
    assert set(every.train.classes) == {1, 2} and set(every.test.classes) == {3, 4}
    assert every.train.images.shape[1:] == (32, 32, 3)


# -- smallNORB: binary header + payload ---------------------------------------------------

def write_smallnorb(folder: Path) -> dict[tuple[str, int, int, int, int, int], np.ndarray]:
    """The six NORB files (gzipped) for a few toys: the real names, headers and layouts."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for part, instances in (("training", (4, 6)), ("testing", (0, 1))):
        recs = [(c, i, e, a, l) for c in (0, 3) for i in instances for e in (0, 8) for a in (0, 17) for l in (1, 5)]
        dat = RNG.integers(0, 256, size=(len(recs), 2, 96, 96), dtype=np.uint8)
        cat = np.array([r[0] for r in recs], dtype=np.int32)
        info = np.array([(i, e, 2 * a, l) for _, i, e, a, l in recs], dtype=np.int32)
        for (c, i, e, a, l), img in zip(recs, dat):
            truth[(part, c, i, e, a, l)] = img[0]
        stem = smallnorb.PARTS[part]
        smallnorb.write_norb_matrix(folder / f"{stem}-dat.mat.gz", dat)
        smallnorb.write_norb_matrix(folder / f"{stem}-cat.mat.gz", cat)
        smallnorb.write_norb_matrix(folder / f"{stem}-info.mat.gz", info)
    return truth


@pytest.fixture
def norb(tmp_path, monkeypatch):
    root = tmp_path / "data"
    truth = write_smallnorb(root / "smallnorb")
    monkeypatch.setattr(smallnorb, "MD5", {name: md5(root / "smallnorb" / name) for name in smallnorb.MD5})
    return root, truth


def test_norb_binary_format_round_trips_and_rejects_damage(tmp_path):
    a = RNG.integers(0, 256, size=(3, 2, 4, 5), dtype=np.uint8)
    smallnorb.write_norb_matrix(tmp_path / "a.mat", a)
    raw = (tmp_path / "a.mat").read_bytes()
    assert raw[:4] == bytes.fromhex("554c3d1e") and raw[4:8] == (4).to_bytes(4, "little")  # magic, ndim
    assert np.array_equal(smallnorb.read_norb_matrix(tmp_path / "a.mat"), a)
    v = np.arange(7, dtype=np.int32)
    smallnorb.write_norb_matrix(tmp_path / "v.mat.gz", v)  # 1-D: three dims stored
    assert np.array_equal(smallnorb.read_norb_matrix(tmp_path / "v.mat.gz"), v)
    (tmp_path / "t.mat").write_bytes(raw[:-7])
    with pytest.raises(ValueError, match="truncated"):
        smallnorb.read_norb_matrix(tmp_path / "t.mat")
    (tmp_path / "m.mat").write_bytes(b"\x00\x00\x00\x00" + raw[4:])
    with pytest.raises(ValueError, match="magic"):
        smallnorb.read_norb_matrix(tmp_path / "m.mat")


def test_smallnorb_official_split_classes_and_lookup(norb, tmp_path):
    root, truth = norb
    data = smallnorb.SmallNorb(smallnorb.SmallNorbConfig(resolution=64)).load(root, tmp_path / "c", progress=False)
    train, test = data.train, data.test
    assert len(train) == len(test) == 32 and train.images.shape[1:] == (64, 64, 1)
    assert train.factor_names == ("azimuth",) and train.factor_sizes == (18,)
    assert set(train.classes).isdisjoint(test.classes)  # different toys
    for part, split, inst in (("training", train, 6), ("testing", test, 1)):
        cls = np.ravel_multi_index((3, inst, 5, 8), (5, 10, 6, 9))
        idx = split.lookup(np.array([cls]), np.array([[17]]))[0]
        assert np.array_equal(split.images[idx, :, :, 0], resize_images(truth[(part, 3, inst, 8, 17, 5)][None, :, :, None], 64)[0, :, :, 0])
    assert "verified" in data.info["checksums"]


def test_smallnorb_poses_holds_out_ten_percent_and_looks_up_across_splits(norb, tmp_path):
    root, truth = norb
    data = smallnorb.SmallNorbPoses(smallnorb.SmallNorbPosesConfig(resolution=32)).load(root, tmp_path / "c",
                                                                                         progress=False)
    train, test = data.train, data.test
    assert len(test) == round(0.1 * 64) and len(train) + len(test) == 64
    keys = [{(c, *f) for c, f in zip(s.classes.tolist(), s.factors.tolist())} for s in (train, test)]
    assert keys[0].isdisjoint(keys[1]) and len(keys[0] | keys[1]) == 64  # images held out, each once
    assert set(test.classes) & set(train.classes)  # poses of objects seen in training, not other objects
    assert train.factor_names == ("elevation", "azimuth") and train.factor_sizes == (9, 18)
    cls = np.ravel_multi_index((0, 4, 1), (5, 10, 6))
    hits = [s.lookup(np.array([cls]), np.array([[8, 0]]))[0] for s in (train, test)]
    assert sum(h >= 0 for h in hits) == 1  # the target lies in exactly one split
    split, idx = (train, hits[0]) if hits[0] >= 0 else (test, hits[1])
    expected = resize_images(truth[("training", 0, 4, 8, 0, 1)][None, :, :, None], 32)[0]
    assert np.array_equal(split.images[idx], expected)
    again = smallnorb.SmallNorbPoses(smallnorb.SmallNorbPosesConfig(resolution=32)).load(root, tmp_path / "c2",
                                                                                          progress=False)
    assert np.array_equal(again.test.classes, test.classes) and np.array_equal(again.test.factors, test.factors)


def test_smallnorb_published_md5_rejects_other_files(tmp_path):
    write_smallnorb(tmp_path / "data" / "smallnorb")
    with pytest.raises(ChecksumError, match="MD5"):
        smallnorb.SmallNorb().load(tmp_path / "data", tmp_path / "c", progress=False)


# -- Chairs: PNG renders in a tar ------------------------------------------------------------

def test_chairs_tar_install_views_and_lookup(tmp_path, monkeypatch):
    renders = {}
    tar_path = tmp_path / "rendered_chairs.tar"
    with tarfile.open(tar_path, "w") as tf:
        for m, model in enumerate(("1a6f615e8b1b5ae4dbbc9440457e303e", "2b90701386f1813052db1dc29d3c0e7d",
                                   "3c9a8d5e1f0b4c2d8e7f6a5b4c3d2e1f")):
            for k, (p, t) in enumerate([(20, 0), (20, 180), (30, 0), (30, 180)]):
                img = RNG.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="PNG")
                name = f"rendered_chairs/{model}/renders/image_{k:03d}_p{p:03d}_t{t:03d}_r096.png"
                info = tarfile.TarInfo(name)
                info.size = buf.tell()
                tf.addfile(info, io.BytesIO(buf.getvalue()))
                renders[(m, p, t)] = img
        info = tarfile.TarInfo("rendered_chairs/all_chair_names.mat")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    monkeypatch.setattr(chairs, "URL", tar_path.as_uri())
    monkeypatch.setattr(chairs, "N_RENDERS", 12)  # the completeness check, scaled to this tiny tar
    monkeypatch.delenv("DISENTBENCH_OFFLINE")
    root = tmp_path / "data"
    ds = chairs.Chairs(chairs.ChairsConfig(resolution=10, crop=20, n_test_models=1))
    data = ds.load(root, tmp_path / "c", progress=False)
    assert (root / "chairs" / "rendered_chairs").is_dir()
    assert data.train.factor_names == ("azimuth", "elevation") and data.train.factor_sizes == (2, 2)
    assert len(data.train) == 8 and len(data.test) == 4 and data.info["azimuths_deg"] == [0, 180]
    cls = int(data.test.classes[0])
    idx = data.test.lookup(np.array([cls]), np.array([[1, 0]]))[0]  # azimuth 180, elevation 20
    expected = resize_images(center_crop(renders[(cls, 20, 180)], 20)[None], 10)[0]
    assert np.array_equal(data.test.images[idx], expected)
    assert "identified by name and size" in data.info["checksums"]


# -- CelebA: JPEGs in a zip + the annotation text files -----------------------------------

def write_celeba(folder: Path, extracted: bool = False) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    ids = {f"{k:06d}.jpg": 10 + k % 3 for k in range(1, 10)}
    jpegs = {}
    for name in ids:
        buf = io.BytesIO()
        Image.fromarray(RNG.integers(0, 256, size=(218, 178, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=95)
        jpegs[name] = buf.getvalue()
    if extracted:
        (folder / "img_align_celeba").mkdir()
        for name, data in jpegs.items():
            (folder / "img_align_celeba" / name).write_bytes(data)
    else:
        with zipfile.ZipFile(folder / "img_align_celeba.zip", "w") as zf:
            for name, data in jpegs.items():
                zf.writestr(f"img_align_celeba/{name}", data)
    (folder / "identity_CelebA.txt").write_text("".join(f"{n} {i}\n" for n, i in ids.items()))
    header = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
    lines = [f"{n} 69 109 106 113 89 109 73 152 108 154" for n in ids]
    (folder / "list_landmarks_align_celeba.txt").write_text(f"{len(ids)}\n{header}\n" + "\n".join(lines) + "\n")
    return {n: np.asarray(Image.open(io.BytesIO(d)).convert("RGB")) for n, d in jpegs.items()}


@pytest.mark.parametrize("extracted", [False, True], ids=["zip", "folder"])
def test_celeba_identity_split_crop_and_landmarks(tmp_path, monkeypatch, extracted):
    root = tmp_path / "data"
    pixels = write_celeba(root / "celeba", extracted)
    monkeypatch.setattr(celeba, "MD5", {**celeba.MD5, **{n: md5(root / "celeba" / n) for n in (
        ["identity_CelebA.txt", "list_landmarks_align_celeba.txt"] + ([] if extracted else ["img_align_celeba.zip"]))}})
    data = celeba.CelebA(celeba.CelebAConfig(resolution=32, n_test_identities=1)).load(root, tmp_path / "c",
                                                                                       progress=False)
    assert len(np.unique(data.test.classes)) == 1 and len(data.train) + len(data.test) == 9
    assert set(data.train.classes).isdisjoint(data.test.classes) and not data.train.has_factors
    k = 0
    name = f"{int(data.train.extras['image_id'][k]):06d}.jpg"
    assert np.array_equal(data.train.images[k], resize_images(center_crop(pixels[name], 128)[None], 32)[0])
    marks = data.train.extras["landmarks"]
    assert marks.shape == (len(data.train), 5, 2)
    assert np.allclose(marks[0, 2], [0.5, 0.5])  # the nose at the image centre (89, 109) → middle of the crop
    assert np.allclose(marks[0, 0], [(69 - 25) / 128, (109 - 45) / 128])
    assert ("identified by name and size" in data.info["checksums"]) == extracted


def test_celeba_is_never_downloaded_and_says_where_files_go(tmp_path):
    with pytest.raises(Unavailable) as exc:
        celeba.CelebA().load(tmp_path, tmp_path / "c", progress=False)
    assert str(tmp_path / "celeba") in str(exc.value) and "identity_CelebA.txt" in str(exc.value)
    assert celeba.HOMEPAGE in str(exc.value)


# -- KTH: AVI videos in zips -----------------------------------------------------------------

def test_kth_videos_frames_and_ten_percent_held_out(tmp_path, monkeypatch):
    import cv2
    zips = tmp_path / "host"
    zips.mkdir()
    for action in kth.ACTIONS:
        with zipfile.ZipFile(zips / f"{action}.zip", "w") as zf:
            for person in (1, 7):
                video = tmp_path / f"person{person:02d}_{action}_d2_uncomp.avi"
                writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
                assert writer.isOpened()
                for t in range(10):
                    writer.write(np.full((120, 160, 3), 20 * t + person, dtype=np.uint8))
                writer.release()
                zf.write(video, video.name)
    monkeypatch.setattr(kth, "BASE_URL", zips.as_uri() + "/")
    monkeypatch.setattr(kth, "MIN_VIDEOS", 2)  # the completeness check, scaled to these tiny zips
    monkeypatch.delenv("DISENTBENCH_OFFLINE")
    root = tmp_path / "data"
    data = kth.KTH(kth.KTHConfig(resolution=16)).load(root, tmp_path / "c", progress=False)
    assert (root / "kth" / "boxing" / "person07_boxing_d2_uncomp.avi").exists()
    assert len(data.train) + len(data.test) == 2 * 6 * 10 and len(data.test) == 12
    assert set(np.unique(data.train.classes)) == {1, 7} and data.train.images.shape[1:] == (16, 16, 1)
    frames, persons = data.train.extras["frame"], data.train.classes
    brightness = data.train.images.reshape(len(data.train), -1).mean(1)
    assert np.allclose(brightness, 20 * frames + persons, atol=3)  # each frame decoded in its place
    assert set(data.train.extras["action"]) == set(range(6)) and set(data.train.extras["scenario"]) == {2}


# -- Market-1501: JPEGs in the official zip ------------------------------------------------

def test_market1501_official_splits_junk_and_cameras(tmp_path):
    root = tmp_path / "data"
    (root / "market1501").mkdir(parents=True)
    boxes = {"bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s1_000123_02.jpg"],
             "query": ["0003_c1s1_000101_00.jpg", "0005_c4s2_000301_00.jpg"],
             "bounding_box_test": ["0003_c2s1_000201_01.jpg", "0005_c5s3_000401_02.jpg", "0000_c6s1_000001_01.jpg",
                                   "-1_c1s1_000002_01.jpg"]}
    pixels = {}
    with zipfile.ZipFile(root / "market1501" / market1501.ZIP, "w") as zf:
        for folder, names in boxes.items():
            for name in names:
                buf = io.BytesIO()
                Image.fromarray(RNG.integers(0, 256, size=(128, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
                zf.writestr(f"Market-1501-v15.09.15/{folder}/{name}", buf.getvalue())
                pixels[name] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        zf.writestr("Market-1501-v15.09.15/bounding_box_train/Thumbs.db", b"junk")
    data = market1501.Market1501(market1501.Market1501Config(resolution=32)).load(root, tmp_path / "c", progress=False)
    s = data.splits
    assert [len(s[k]) for k in ("train", "query", "gallery", "test")] == [3, 2, 3, 4]
    assert s["train"].classes.tolist() == [2, 2, 7] and s["query"].extras["camera"].tolist() == [1, 4]
    assert sorted(s["gallery"].classes.tolist()) == [0, 3, 5] and 0 not in s["test"].classes  # junk -1 dropped
    expected = resize_images(pad_to_square(pixels["0007_c3s1_000123_02.jpg"])[None], 32)[0]
    assert np.array_equal(s["train"].images[2], expected) and expected[:, :8].max() == 0  # black side bars
    assert "unpinned" in data.info["checksums"]


# -- every registered dataset, and the CLI -------------------------------------------------

REAL = [name for name in load_registries().datasets.names() if name != "synth3d"]


@pytest.mark.parametrize("name", REAL)
def test_every_real_dataset_plugin_is_complete_and_says_what_is_missing(name, tmp_path):
    import dataclasses

    spec = load_registries().datasets.get(name)
    target = spec.load()
    config = target.Config()
    assert dataclasses.is_dataclass(config) and config.resolution == 64  # 64×64 by default
    ds = target(config)
    for attr in ("load", "fetch", "describe"):
        assert callable(getattr(ds, attr))
    with pytest.raises(Unavailable) as exc:
        ds.load(tmp_path / "empty", tmp_path / "c", progress=False)
    assert str(tmp_path / "empty") in str(exc.value)
    info = ds.describe(tmp_path / "empty", tmp_path / "c")
    assert info["found"] is False and info["how_to_get"] and info["protocol"]


def test_cli_data_info_and_fetch(cars, tmp_path, capsys):
    root, _ = cars
    assert main(["data", "info", "cars3d", "--data-dir", str(root), "--set", "cars3d.n_test_models=2",
                 "--set", "cars3d.resolution=8"]) == 0
    out = capsys.readouterr().out
    assert "found: True" in out and "checksums: verified: 7 file(s)" in out and "built: False" in out
    cars3d.Cars3D(cars3d.Cars3DConfig(resolution=8, n_test_models=2)).load(
        root, Path(__import__("os").environ["DISENTBENCH_CACHE"]) / "datasets", progress=False)
    assert main(["data", "info", "cars3d", "--data-dir", str(root), "--set", "cars3d.n_test_models=2",
                 "--set", "cars3d.resolution=8", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"] == {"images": 4 * 96, "classes": 4} and info["splits"]["test"]["classes"] == 2
    assert main(["data", "fetch", "cars3d", "--data-dir", str(root)]) == 0  # already there: verified
    assert "fetched and verified" in capsys.readouterr().out
    assert main(["data", "fetch", "smallnorb", "--data-dir", str(tmp_path / "empty"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "smallnorb" in err and "DISENTBENCH_OFFLINE" in err and str(tmp_path / "empty" / "smallnorb") in err
    assert main(["data", "info", "all", "--data-dir", str(tmp_path / "empty")]) == 1
    assert "market1501:" in capsys.readouterr().out
