"""Cars3D (Reed et al. 2015, "Deep Visual Analogy-Making"): 183 car CAD models, each rendered at
24 azimuths × 4 elevations, 128×128 RGB.

Class = car model; content = (azimuth, elevation). Split as LORD (Gabbay & Hoshen 2020, A.2):
163 models for training, 20 held out for testing; which 20 is a deterministic function of
``split_seed`` (the first 20 in a hash order of the model names) and is listed in ``info``.

On disk (the ``data/cars/`` folder of ``nips2015-analogy-data.tar.gz``, as ``<root>/cars3d/``;
``<root>/cars/`` is accepted too): ``list.txt`` (the model names) and one MATLAB v5 file
``car_NNN_mesh.mat`` per model with ``im`` (128, 128, 3, 24, 4) uint8 indexed
[row, col, rgb, azimuth, elevation], ``mask``, ``YAW_LIST`` (1, 24) and ``PITCH_LIST`` (1, 4) in
degrees. Every file is checked against the SHA-256 manifest ``cars3d_manifest.json``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from disentbench.datacache import ArrayWriter
from disentbench.download import Resource, extracted
from disentbench.images import resize_images
from disentbench_plugins.datasets.common import (
    DOWNLOADS,
    DataMissing,
    FileDataset,
    Layout,
    Sources,
    held_out,
    move_into_place,
    progress_bar,
)

MANIFEST = Path(__file__).with_name("cars3d_manifest.json")
ARCHIVE_URL = "http://www.scottreed.info/files/nips2015-analogy-data.tar.gz"
# MD5 of the archive as published by the disent library (no SHA-256 is published); the files
# inside are pinned by SHA-256 in the manifest.
ARCHIVE = Resource(
    filename=f"{DOWNLOADS}/nips2015-analogy-data.tar.gz",
    url=ARCHIVE_URL,
    md5="4e866a7919c1beedf53964e6f7a23686",
    manual="it holds Cars3D (data/cars/) and Sprites (data/sprites/); `disentbench data fetch cars3d` "
           "downloads and installs both",
)
N_AZIMUTHS, N_ELEVATIONS = 24, 4


@lru_cache(maxsize=1)
def manifest() -> dict[str, dict[str, str]]:
    """File name → {"sha256": ...} for every file of the Cars3D folder."""
    files = json.loads(MANIFEST.read_text())["files"]
    return {name: {"sha256": entry["sha256"]} for name, entry in files.items()}


def install_analogy_archive(root: Path, archive: Path, want: str) -> None:
    """Extract ``data/cars/`` → ``<root>/cars3d/`` and ``data/sprites/`` → ``<root>/sprites/``
    from Reed et al.'s archive (only those members; the guard refuses escaping paths), through a
    fresh staging folder. The folder of the dataset asking (``want``) gets the files it lacks (an
    existing one is completed, never replaced: nothing there is deleted or overwritten); the other
    is added only if absent."""
    root = Path(root)
    wanted = lambda name: name.lstrip("./").startswith(("data/cars/", "data/sprites/"))  # noqa: E731
    with extracted(archive, root / ".nips2015-analogy-data", members=wanted) as tmp:
        for inner, final in (("cars", "cars3d"), ("sprites", "sprites")):
            src = tmp / "data" / inner
            if src.is_dir() and (final == want or not (root / final).exists()):
                move_into_place(src, root / final)


@dataclass
class Cars3DConfig:
    resolution: int = 64  # images are area-averaged from 128 px
    n_test_models: int = 20  # LORD: 163 train / 20 test models
    split_seed: int = 0  # which models are held out (deterministic hash order)

    def __post_init__(self) -> None:
        if not 8 <= self.resolution <= 128:
            raise ValueError(f"resolution {self.resolution} must be between 8 and 128 (the source is 128 px)")
        if self.n_test_models < 1:
            raise ValueError("n_test_models must be at least 1")


class Cars3D(FileDataset):
    """Cars3D as LORD uses it (see the module docstring)."""

    name = "cars3d"
    homepage = "http://www.scottreed.info (Reed et al. 2015, nips2015-analogy-data.tar.gz)"
    Config = Cars3DConfig
    folders = ("cars3d", "cars")

    def protocol(self) -> str:
        return (f"class = car model, content = azimuth (24) × elevation (4); {self.config.n_test_models} "
                f"models held out for test (hash order, split_seed={self.config.split_seed}), the rest train")

    def downloads(self) -> list[Resource]:
        return [ARCHIVE]

    def install(self, root: Path, files: list[Path], progress: bool) -> None:
        install_analogy_archive(root, files[0], want="cars3d")

    def manual(self, root: Path) -> str:
        return (f"put the data/cars/ folder of nips2015-analogy-data.tar.gz ({ARCHIVE_URL}) at "
                f"{Path(root) / 'cars3d'}, or the archive itself at {Path(root) / ARCHIVE.filename}")

    def locate(self, root: Path) -> Sources:
        root = Path(root)
        for name in self.folders:
            folder = root / name
            if (folder / "list.txt").is_file():
                models = [line.strip() for line in (folder / "list.txt").read_text().splitlines() if line.strip()]
                files = {"list.txt": folder / "list.txt"}
                files.update({f"{m}.mat": folder / f"{m}.mat" for m in models})
                missing = [rel for rel, path in files.items() if not path.is_file()]
                if missing:
                    raise DataMissing(
                        f"dataset 'cars3d': {folder} lists {len(models)} models but {len(missing)} file(s) are "
                        f"missing ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}). "
                        f"Run `disentbench data fetch cars3d`, or {self.manual(root)}."
                    )
                pins = manifest()
                return Sources(folder, files, {rel: pins[rel] for rel in files if rel in pins},
                               layout=f"{name}/ (list.txt + {len(models)} car_NNN_mesh.mat)",
                               extra={"models": models})
        raise DataMissing(
            f"dataset 'cars3d' not found: no {root / 'cars3d' / 'list.txt'}. Run `disentbench data fetch cars3d "
            f"--data-dir {root}` to download {ARCHIVE_URL} (verified, then data/cars/ is installed as "
            f"{root / 'cars3d'}), or {self.manual(root)}."
        )

    def build(self, sources: Sources, writer: ArrayWriter, progress: bool) -> Layout:
        from scipy.io import loadmat

        c = self.config
        models: list[str] = sources.extra["models"]
        test = held_out(models, c.n_test_models, c.split_seed, "cars3d")
        order = [m for m in models if m not in test] + [m for m in models if m in test]
        class_of = {m: k for k, m in enumerate(models)}  # class id = position in list.txt
        n_views = N_AZIMUTHS * N_ELEVATIONS
        images = writer.allocate("images", (len(order) * n_views, c.resolution, c.resolution, 3))
        yaw = pitch = None
        with progress_bar(len(order) * n_views, "cars3d: preprocessing", progress) as bar:
            for k, model in enumerate(order):
                with self.reading(sources.files[f"{model}.mat"]):
                    mat = loadmat(sources.files[f"{model}.mat"], variable_names=["im", "YAW_LIST", "PITCH_LIST"])
                    im = mat["im"]
                    if im.ndim != 5 or im.shape[2:] != (3, N_AZIMUTHS, N_ELEVATIONS) or im.dtype != np.uint8:
                        raise ValueError(f"'im' has {im.dtype} {im.shape}; expected uint8 (H, W, 3, {N_AZIMUTHS}, "
                                         f"{N_ELEVATIONS})")
                    if yaw is None:
                        yaw, pitch = mat["YAW_LIST"].ravel().tolist(), mat["PITCH_LIST"].ravel().tolist()
                views = im.transpose(3, 4, 0, 1, 2).reshape(n_views, *im.shape[:3])  # azimuth-major
                images[k * n_views : (k + 1) * n_views] = resize_images(views, c.resolution)
                bar.update(n_views)
        images.flush()
        writer.save("classes", np.repeat([class_of[m] for m in order], n_views).astype(np.int64))
        grid = np.array([(a, e) for a in range(N_AZIMUTHS) for e in range(N_ELEVATIONS)], dtype=np.int64)
        writer.save("factors", np.tile(grid, (len(order), 1)))
        n_train = (len(order) - len(test)) * n_views
        test_models = [m for m in models if m in test]
        return Layout(
            splits={"train": (0, n_train), "test": (n_train, len(order) * n_views)},
            factor_names=("azimuth", "elevation"),
            factor_sizes=(N_AZIMUTHS, N_ELEVATIONS),
            info={
                "protocol": self.protocol(),
                "paper": "LORD (Gabbay & Hoshen, ICLR 2020) A.2: 163 train / 20 test car models",
                "n_models": len(models),
                "test_models": test_models,
                "test_classes": [class_of[m] for m in test_models],
                "classes": "class id = position of the model in list.txt (0-based)",
                "azimuths_deg": yaw,
                "elevations_deg": pitch,
                "resize": f"128 -> {c.resolution} px, area averaging",
                "source": ARCHIVE_URL,
            },
        )
