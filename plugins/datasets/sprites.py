"""Sprites (Reed et al. 2015, "Deep Visual Analogy-Making"): video-game characters drawn in 5
actions × 4 viewpoints (20 animations) of several frames each, 60×60 RGB.

Class = character; content = frame (the pose: the index of the frame among all frames of the 20
animations, the same for every character, so ``(character, frame)`` names one image and
ground-truth transfer works as in Esser et al. 2019 §4.1). Split as Esser et al.: the characters
of ``trainidx`` in ``sprites_splits.mat`` train, the rest are held out for test; by default only
every other character is used (odd ones differ from the previous one only by a weapon that not
all actions show, as Esser et al. note).

On disk (the ``data/sprites/`` folder of ``nips2015-analogy-data.tar.gz``, as
``<root>/sprites/``): ``sprites_<n>.mat`` per character, MATLAB v7.3 (HDF5) files whose ``sprites``
cell holds 21 animations (the 21st is an extra, unused), each a (frames, 10800) array of values
in [0, 1] laid out as MATLAB's column-major (60, 60, 3); and ``sprites_splits.mat`` (MATLAB v5)
with 1-based ``trainidx``. Reading v7.3 files needs ``h5py``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from disentbench.contracts import Unavailable
from disentbench.datacache import ArrayWriter
from disentbench.download import Resource
from disentbench.images import resize_images
from disentbench_plugins.datasets.cars3d import ARCHIVE, ARCHIVE_URL, install_analogy_archive
from disentbench_plugins.datasets.common import DataMissing, FileDataset, Layout, Sources, progress_bar

N_ANIMATIONS = 20  # 5 actions × 4 views; the file's 21st animation is not used
SIDE = 60
FILE_RE = re.compile(r"^sprites_(\d+)\.mat$")


def read_character(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(frames (F, 60, 60, 3) uint8, animation index (F,)) of one character file."""
    try:
        import h5py
    except ImportError:
        raise Unavailable("reading Sprites (MATLAB v7.3 files) needs h5py: `pip install h5py`") from None
    frames, animation = [], []
    with h5py.File(path, "r") as f:
        refs = np.asarray(f["sprites"]).ravel()
        if len(refs) < N_ANIMATIONS:
            raise ValueError(f"{path}: 'sprites' holds {len(refs)} animations; expected at least {N_ANIMATIONS}")
        for a, ref in enumerate(refs[:N_ANIMATIONS]):
            data = np.asarray(f[ref], dtype=np.float64)
            if data.ndim != 2 or SIDE * SIDE * 3 not in data.shape:
                raise ValueError(f"{path}: animation {a} has shape {data.shape}; expected (frames, {SIDE * SIDE * 3})")
            if data.shape[1] != SIDE * SIDE * 3:
                data = data.T
            pixels = data.reshape(-1, 3, SIDE, SIDE).transpose(0, 3, 2, 1)  # column-major (60, 60, 3) → rows, cols, rgb
            frames.append(np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8))
            animation.append(np.full(len(pixels), a, dtype=np.int64))
    return np.concatenate(frames), np.concatenate(animation)


@dataclass
class SpritesConfig:
    resolution: int = 64  # from 60 px (bilinear when enlarging)
    every_other_character: bool = True  # Esser et al.: skip the weapon-only variants

    def __post_init__(self) -> None:
        if not 8 <= self.resolution <= 128:
            raise ValueError(f"resolution {self.resolution} must be between 8 and 128")


class Sprites(FileDataset):
    """Reed et al.'s sprites with Esser et al.'s protocol (module docstring)."""

    name = "sprites"
    homepage = "http://www.scottreed.info (Reed et al. 2015, nips2015-analogy-data.tar.gz)"
    Config = SpritesConfig

    def protocol(self) -> str:
        return ("class = character, content = frame (pose within the 20 animations); characters of trainidx "
                "(sprites_splits.mat) train, the others test" +
                ("; every other character" if self.config.every_other_character else ""))

    def downloads(self) -> list[Resource]:
        return [ARCHIVE]

    def install(self, root: Path, files: list[Path], progress: bool) -> None:
        install_analogy_archive(root, files[0], want="sprites")

    def manual(self, root: Path) -> str:
        return (f"put the data/sprites/ folder of nips2015-analogy-data.tar.gz ({ARCHIVE_URL}) at "
                f"{Path(root) / 'sprites'}, or the archive itself at {Path(root) / ARCHIVE.filename}")

    def locate(self, root: Path) -> Sources:
        folder = self.folder(root)
        chars = sorted((int(m.group(1)), p) for p in folder.glob("sprites_*.mat") if (m := FILE_RE.match(p.name)))
        splits = folder / "sprites_splits.mat"
        if not chars or not splits.is_file():
            raise DataMissing(
                f"dataset 'sprites' not found: {folder} needs sprites_<n>.mat files and sprites_splits.mat. "
                f"Run `disentbench data fetch sprites --data-dir {Path(root)}` to download {ARCHIVE_URL}, "
                f"or {self.manual(root)}."
            )
        files = {p.name: p for _, p in chars}
        files["sprites_splits.mat"] = splits
        return Sources(folder, files, {}, layout=f"sprites/ ({len(chars)} characters)",
                       extra={"characters": [n for n, _ in chars]})

    def build(self, sources: Sources, writer: ArrayWriter, progress: bool) -> Layout:
        from scipy.io import loadmat

        c = self.config
        numbers: list[int] = sources.extra["characters"]
        with self.reading(sources.files["sprites_splits.mat"]):
            split_file = loadmat(sources.files["sprites_splits.mat"])
            if "trainidx" not in split_file:
                raise ValueError("it has no 'trainidx'")
        train_numbers = {int(i) for i in np.asarray(split_file["trainidx"]).ravel()}
        used = numbers[::2] if c.every_other_character else numbers
        order = [n for n in used if n in train_numbers] + [n for n in used if n not in train_numbers]
        n_train_chars = sum(n in train_numbers for n in used)
        with self.reading(sources.files[f"sprites_{order[0]}.mat"]):
            first, animation = read_character(sources.files[f"sprites_{order[0]}.mat"])
        n_frames = len(first)
        images = writer.allocate("images", (len(order) * n_frames, c.resolution, c.resolution, 3))
        with progress_bar(len(order) * n_frames, "sprites: preprocessing", progress) as bar:
            for k, number in enumerate(order):
                with self.reading(sources.files[f"sprites_{number}.mat"]):
                    frames, anim = (first, animation) if k == 0 else read_character(sources.files[f"sprites_{number}.mat"])
                if len(frames) != n_frames or not np.array_equal(anim, animation):
                    raise ValueError(f"sprites_{number}.mat has {len(frames)} frames; sprites_{order[0]}.mat has "
                                     f"{n_frames}: frame indices would not name the same pose")
                images[k * n_frames : (k + 1) * n_frames] = resize_images(frames, c.resolution)
                bar.update(n_frames)
        images.flush()
        writer.save("classes", np.repeat(np.asarray(order, dtype=np.int64), n_frames))
        writer.save("factors", np.tile(np.arange(n_frames, dtype=np.int64), len(order))[:, None])
        writer.save("extra.animation", np.tile(animation, len(order)))
        n_train = n_train_chars * n_frames
        return Layout(
            splits={"train": (0, n_train), "test": (n_train, len(order) * n_frames)},
            factor_names=("frame",),
            factor_sizes=(n_frames,),
            extras=("animation",),
            info={
                "protocol": self.protocol(),
                "paper": "Esser et al. (ICCV 2019) §4.1: Reed et al.'s sprites, held-out characters",
                "classes": "class id = n of sprites_<n>.mat",
                "n_characters": {"train": n_train_chars, "test": len(order) - n_train_chars},
                "frames_per_character": n_frames,
                "animations": f"extra 'animation' 0..{N_ANIMATIONS - 1} (5 actions × 4 views)",
                "resize": f"{SIDE} -> {c.resolution} px",
                "source": ARCHIVE_URL,
            },
        )
