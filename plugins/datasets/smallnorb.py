"""smallNORB (LeCun, Huang & Bottou 2004): 50 toys of 5 categories (10 instances each), imaged by
two cameras under 6 lightings, 9 elevations (30°-70°) and 18 azimuths (0°-340°), 96×96 grey.

Two protocols of LORD (Gabbay & Hoshen 2020, A.2), both from the same six files and one camera:

- ``smallnorb``: class = category × instance × lighting × elevation, content = azimuth (18);
  the official split: instances 4, 6, 7, 8, 9 of each category train (25 toys), 0, 1, 2, 3, 5
  test (25 toys).
- ``smallnorb-poses``: class = category × instance × lighting, content = elevation (9) × azimuth
  (18); all 50 toys; 10% of the images held out for test (a deterministic hash order of the
  images), so test classes are seen in training and ground-truth targets may lie in either split.

On disk (``<root>/smallnorb/``): the NYU files ``smallnorb-5x46789x9x18x6x2x96x96-training-
{dat,cat,info}.mat.gz`` and ``smallnorb-5x01235x9x18x6x2x96x96-testing-{...}.mat.gz`` as
downloaded (checked against their published MD5), or the same names without ``.gz``. They are
NORB binary matrices: int32 magic (0x1E3D4C55 bytes, 0x1E3D4C54 int32), int32 ndim, max(3, ndim)
int32 dimensions, then the little-endian payload. ``dat`` is (24300, 2, 96, 96) uint8 (two
cameras), ``cat`` (24300,) the category, ``info`` (24300, 4): instance, elevation index,
azimuth/10° (0, 2, ..., 34), lighting.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from disentbench.datacache import ArrayWriter
from disentbench.download import Resource
from disentbench.images import resize_images
from disentbench_plugins.datasets.common import DataMissing, FileDataset, Layout, Sources, progress_bar, rank_by_hash

BASE_URL = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
PARTS = {"training": "smallnorb-5x46789x9x18x6x2x96x96-training", "testing": "smallnorb-5x01235x9x18x6x2x96x96-testing"}
KINDS = ("dat", "cat", "info")
# MD5 of the .mat.gz files as published by the disent library (the NYU page publishes none).
MD5 = {
    "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz": "66054832f9accfe74a0f4c36a75bc0a2",
    "smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat.gz": "23c8b86101fbf0904a000b43d3ed2fd9",
    "smallnorb-5x46789x9x18x6x2x96x96-training-info.mat.gz": "51dee1210a742582ff607dfd94e332e3",
    "smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat.gz": "e4ad715691ed5a3a5f138751a4ceb071",
    "smallnorb-5x01235x9x18x6x2x96x96-testing-cat.mat.gz": "5aa791cd7e6016cf957ce9bdb93b8603",
    "smallnorb-5x01235x9x18x6x2x96x96-testing-info.mat.gz": "a9454f3864d7fd4bb3ea7fc3eb84924e",
}
N_CATEGORIES, N_INSTANCES, N_LIGHTINGS, N_ELEVATIONS, N_AZIMUTHS = 5, 10, 6, 9, 18
MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32, 0x1E3D4C56: np.int16, 0x1E3D4C51: np.float32,
         0x1E3D4C53: np.float64}


def read_norb_matrix(path: Path) -> np.ndarray:
    """Read one NORB binary matrix (``.mat`` or ``.mat.gz``); raises ValueError on a bad header or
    a payload of the wrong length (a truncated download)."""
    path = Path(path)
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 20:
        raise ValueError(f"{path}: {len(raw)} bytes is too short for a NORB matrix header")
    magic, ndim = (int(v) for v in np.frombuffer(raw, dtype="<i4", count=2))
    if magic not in MAGIC:
        raise ValueError(f"{path}: magic number {magic:#x} is not a NORB matrix type ({', '.join(hex(m) for m in MAGIC)})")
    if not 1 <= ndim <= 8:
        raise ValueError(f"{path}: header says {ndim} dimensions")
    stored = max(3, ndim)
    header = 8 + 4 * stored
    dims = tuple(int(v) for v in np.frombuffer(raw, dtype="<i4", count=stored, offset=8)[:ndim])
    dtype = np.dtype(MAGIC[magic]).newbyteorder("<")
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: payload has {len(raw) - header} bytes, header {dims} {dtype} needs {expected}; "
                         "the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_norb_matrix(path: Path, array: np.ndarray) -> None:
    """Write ``array`` in the NORB binary format (gzip-compressed if ``path`` ends in .gz); the
    inverse of :func:`read_norb_matrix` (used to make test files)."""
    magic = {np.dtype(v): k for k, v in MAGIC.items()}[np.dtype(array.dtype)]
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    data = np.array([magic, array.ndim, *dims], dtype="<i4").tobytes() + np.ascontiguousarray(array).astype(
        array.dtype.newbyteorder("<")).tobytes()
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)


@dataclass
class SmallNorbConfig:
    resolution: int = 64  # area-averaged from 96 px
    camera: int = 0  # the stereo pair's left (0) or right (1) image

    def __post_init__(self) -> None:
        if not 8 <= self.resolution <= 96:
            raise ValueError(f"resolution {self.resolution} must be between 8 and 96 (the source is 96 px)")
        if self.camera not in (0, 1):
            raise ValueError(f"camera must be 0 or 1, got {self.camera}")


@dataclass
class SmallNorbPosesConfig(SmallNorbConfig):
    test_fraction: float = 0.1  # LORD: 10% of the images held out
    split_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


class SmallNorb(FileDataset):
    """``smallnorb``: the official 25/25-instance split, azimuth as content (module docstring)."""

    name = "smallnorb"
    homepage = BASE_URL
    Config = SmallNorbConfig
    folder_name = "smallnorb"

    def folder(self, root: Path) -> Path:
        return Path(root) / self.folder_name

    def protocol(self) -> str:
        return ("class = category × instance × lighting × elevation, content = azimuth (18); official split: "
                "instances 4,6,7,8,9 train, 0,1,2,3,5 test (25 toys each)")

    def downloads(self) -> list[Resource]:
        return [Resource(f"{self.folder_name}/{name}", url=BASE_URL + name, md5=md5) for name, md5 in MD5.items()]

    def manual(self, root: Path) -> str:
        return (f"download the six smallnorb-*.mat.gz files from {BASE_URL} by hand and put them (gzipped as "
                f"downloaded, or unzipped without .gz) into {self.folder(root)}")

    def locate(self, root: Path) -> Sources:
        folder = self.folder(root)
        files, pins, missing = {}, {}, []
        for gz_name, md5 in MD5.items():
            plain = gz_name[: -len(".gz")]
            if (folder / gz_name).is_file():
                files[gz_name], pins[gz_name] = folder / gz_name, {"md5": md5}
            elif (folder / plain).is_file():
                files[plain] = folder / plain  # unzipped by hand: no published checksum
            else:
                missing.append(gz_name)
        if missing:
            raise DataMissing(
                f"dataset {self.name!r}: {len(missing)} of the 6 smallNORB files are missing from {folder}: "
                f"{', '.join(missing)}. Run `disentbench data fetch {self.name} --data-dir {Path(root)}` to "
                f"download them (MD5-verified), or {self.manual(root)}."
            )
        return Sources(folder, files, pins, layout="smallnorb/ (6 NORB binary files)")

    def read_part(self, sources: Sources, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images (N, 96, 96) of the configured camera, categories (N,), info (N, 4)) of one file set."""
        def find(kind: str) -> Path:
            stem = f"{PARTS[part]}-{kind}.mat"
            return sources.files.get(stem + ".gz") or sources.files[stem]

        def read(kind: str) -> np.ndarray:
            with self.reading(find(kind)):
                return read_norb_matrix(find(kind))

        dat, cat, info = (read(kind) for kind in KINDS)
        n = len(dat)
        if dat.ndim != 4 or dat.shape[1] != 2 or cat.shape[0] != n or info.shape != (n, 4):
            raise ValueError(f"smallNORB {part} files disagree: dat {dat.shape}, cat {cat.shape}, info {info.shape}")
        return dat[:, self.config.camera], cat.astype(np.int64).reshape(n), info.astype(np.int64)

    def labels(self, cat: np.ndarray, info: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class ids, factors) for this protocol."""
        instance, elevation, azimuth, lighting = info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]
        classes = np.ravel_multi_index((cat, instance, lighting, elevation),
                                       (N_CATEGORIES, N_INSTANCES, N_LIGHTINGS, N_ELEVATIONS))
        return classes.astype(np.int64), azimuth[:, None].astype(np.int64)

    def build(self, sources: Sources, writer: ArrayWriter, progress: bool) -> Layout:
        parts = [self.read_part(sources, part) for part in ("training", "testing")]
        images, classes, factors, ranges, start = [], [], [], {}, 0
        for split, (img, cat, info) in zip(("train", "test"), parts):
            cls, fac = self.labels(cat, info)
            order = np.lexsort((*fac.T[::-1], cls))  # by class, then content
            images.append(img[order]); classes.append(cls[order]); factors.append(fac[order])
            ranges[split] = (start, start + len(order))
            start += len(order)
        self._write(writer, images, classes, factors, progress)
        return Layout(splits=ranges, factor_names=("azimuth",), factor_sizes=(N_AZIMUTHS,),
                      info=self._info(ranges))

    def _write(self, writer: ArrayWriter, images: list[np.ndarray], classes: list[np.ndarray],
               factors: list[np.ndarray], progress: bool) -> None:
        r = self.config.resolution
        total = sum(len(x) for x in images)
        out = writer.allocate("images", (total, r, r, 1))
        k = 0
        with progress_bar(total, f"{self.name}: preprocessing", progress) as bar:
            for block in images:
                for s in range(0, len(block), 1024):
                    chunk = block[s : s + 1024][..., None]
                    out[k : k + len(chunk)] = resize_images(chunk, r)
                    k += len(chunk)
                    bar.update(len(chunk))
        out.flush()
        writer.save("classes", np.concatenate(classes))
        writer.save("factors", np.concatenate(factors))

    def _info(self, ranges: dict[str, tuple[int, int]]) -> dict:
        return {
            "protocol": self.protocol(),
            "paper": "LORD (Gabbay & Hoshen, ICLR 2020) A.2",
            "camera": self.config.camera,
            "classes": "class id = ravel_multi_index((category, instance, lighting, elevation), (5, 10, 6, 9))",
            "azimuths_deg": [20 * a for a in range(N_AZIMUTHS)],
            "resize": f"96 -> {self.config.resolution} px, area averaging, grey (1 channel)",
            "source": BASE_URL,
        }


class SmallNorbPoses(SmallNorb):
    """``smallnorb-poses``: all toys, 10% of images held out, elevation × azimuth as content."""

    name = "smallnorb-poses"
    Config = SmallNorbPosesConfig

    def protocol(self) -> str:
        return (f"class = category × instance × lighting, content = elevation (9) × azimuth (18); all 50 toys; "
                f"{self.config.test_fraction:.0%} of the images held out (hash order, split_seed="
                f"{self.config.split_seed})")

    def labels(self, cat: np.ndarray, info: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        instance, elevation, azimuth, lighting = info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]
        classes = np.ravel_multi_index((cat, instance, lighting), (N_CATEGORIES, N_INSTANCES, N_LIGHTINGS))
        return classes.astype(np.int64), np.stack([elevation, azimuth], 1).astype(np.int64)

    def build(self, sources: Sources, writer: ArrayWriter, progress: bool) -> Layout:
        c = self.config
        img, cls, fac = [], [], []
        for part in ("training", "testing"):
            images, cat, info = self.read_part(sources, part)
            classes, factors = self.labels(cat, info)
            img.append(images); cls.append(classes); fac.append(factors)
        images, classes, factors = np.concatenate(img), np.concatenate(cls), np.concatenate(fac)
        # Every image is named by its class and content; one camera makes the names unique.
        names = [f"{k}:{e}:{a}" for k, (e, a) in zip(classes.tolist(), factors.tolist())]
        n_test = int(round(c.test_fraction * len(names)))
        test = set(rank_by_hash(names, f"smallnorb-poses:{c.split_seed}")[:n_test])
        is_test = np.array([n in test for n in names])
        # train images first, then test; each sorted by class, then content
        order = np.concatenate([idx[np.lexsort((*factors[idx].T[::-1], classes[idx]))]
                                for idx in (np.flatnonzero(~is_test), np.flatnonzero(is_test))])
        n_train = int((~is_test).sum())
        self._write(writer, [images[order]], [classes[order]], [factors[order]], progress)
        ranges = {"train": (0, n_train), "test": (n_train, len(order))}
        info = self._info(ranges)
        info.update(classes="class id = ravel_multi_index((category, instance, lighting), (5, 10, 6))",
                    paper="LORD (Gabbay & Hoshen, ICLR 2020) A.2: all classes for training, 10% of images held out",
                    elevations_deg=[30 + 5 * e for e in range(N_ELEVATIONS)])
        return Layout(splits=ranges, factor_names=("elevation", "azimuth"), factor_sizes=(N_ELEVATIONS, N_AZIMUTHS),
                      info=info)
