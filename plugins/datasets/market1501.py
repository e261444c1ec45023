"""Market-1501 (Zheng et al. 2015): 32,668 pedestrian boxes of 1,501 people from 6 cameras,
128×64 (height × width) RGB.

Class = person id; no ground-truth content (pose is measured by a keypoint detector, Esser et
al. 2019 §4.4). The official protocol: ``train`` = ``bounding_box_train`` (751 ids), ``query`` =
``query`` (750 ids), ``gallery`` = ``bounding_box_test`` without the junk boxes (id -1; id 0 are
the distractors, kept as in the official evaluation), and ``test`` = query plus the gallery's real
ids (what the generic metrics use). Per-image annotations in ``Split.extras``: ``camera`` (1-6) and
``sequence``, which re-identification mAP needs. Images are padded to a square (black bars left
and right; ``fit = "stretch"`` stretches instead) and area-averaged to ``resolution``.

On disk (``<root>/market1501/``, placed by hand: the official hosts need a login or are flaky):
``Market-1501-v15.09.15.zip``, or its extracted folder ``Market-1501-v15.09.15/`` with
``bounding_box_train/``, ``bounding_box_test/`` and ``query/`` of ``PPPP_cCsS_FFFFFF_BB.jpg``
files. No checksum is published.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from disentbench.datacache import ArrayWriter
from disentbench.images import pad_to_square, resize_images
from disentbench_plugins.datasets.common import DataMissing, FileDataset, Layout, Sources, progress_bar

HOMEPAGE = "http://www.liangzheng.com.cn/Project/project_reid.html"
ZIP = "Market-1501-v15.09.15.zip"
NAME_RE = re.compile(r"^(-?\d+)_c(\d)s(\d)_(\d+)_(\d+)\.jpg$")
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


@dataclass
class Market1501Config:
    resolution: int = 64
    fit: Literal["pad", "stretch"] = "pad"  # how the 128×64 boxes become square

    def __post_init__(self) -> None:
        if not 8 <= self.resolution <= 128:
            raise ValueError(f"resolution {self.resolution} must be between 8 and 128")


class Market1501(FileDataset):
    """Market-1501 with the official train / query / gallery split (module docstring)."""

    name = "market1501"
    homepage = HOMEPAGE
    Config = Market1501Config

    def protocol(self) -> str:
        return ("class = person id, no content factors; official split: train = bounding_box_train, "
                "query = query, gallery = bounding_box_test without junk, test = query + real gallery ids; "
                "extras: camera, sequence")

    def manual(self, root: Path) -> str:
        return (f"download {ZIP} (linked from {HOMEPAGE}) and put it into {self.folder(root)}, or extract it there "
                f"so that {self.folder(root) / 'Market-1501-v15.09.15' / 'bounding_box_train'} exists")

    def locate(self, root: Path) -> Sources:
        folder = self.folder(root)
        if (folder / ZIP).is_file():
            return Sources(folder, {ZIP: folder / ZIP}, {}, layout=f"market1501/{ZIP}")
        for base in sorted(folder.glob("*/bounding_box_train")) + [folder / "bounding_box_train"]:
            base = base.parent
            if all((base / sub).is_dir() for sub in FOLDERS.values()):
                files = {f"{sub}/{p.name}": p for sub in FOLDERS.values() for p in sorted((base / sub).glob("*.jpg"))}
                return Sources(base, files, {}, layout=f"{base.name}/ (extracted: identified by names and sizes)",
                               fingerprint_only=True)
        raise DataMissing(
            f"dataset 'market1501' not found: no {folder / ZIP} and no extracted folder with "
            f"{', '.join(FOLDERS.values())} under {folder}. Market-1501 is not downloaded automatically: "
            f"{self.manual(root)}."
        )

    def _entries(self, sources: Sources, archive: zipfile.ZipFile | None) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
        """Per official folder: (member or relative path, (pid, camera, sequence)) of each box."""
        names = archive.namelist() if archive is not None else list(sources.files)
        out: dict[str, list] = {split: [] for split in FOLDERS}
        for name in sorted(names):
            parts = name.split("/")
            if len(parts) < 2:
                continue
            m = NAME_RE.match(parts[-1])
            for split, sub in FOLDERS.items():
                if m and parts[-2] == sub:
                    pid, cam, seq = int(m.group(1)), int(m.group(2)), int(m.group(3))
                    if pid != -1:  # junk boxes are not part of the protocol
                        out[split].append((name, (pid, cam, seq)))
        return out

    def build(self, sources: Sources, writer: ArrayWriter, progress: bool) -> Layout:
        from PIL import Image

        c = self.config
        archive = zipfile.ZipFile(sources.files[ZIP]) if ZIP in sources.files else None
        try:
            entries = self._entries(sources, archive)
            if not entries["train"] or not entries["query"] or not entries["gallery"]:
                raise ValueError(f"{sources.folder}: found {', '.join(f'{len(v)} {k}' for k, v in entries.items())} "
                                 "boxes; every official folder must have some")
            gallery_real = [e for e in entries["gallery"] if e[1][0] > 0]
            distractors = [e for e in entries["gallery"] if e[1][0] == 0]
            ordered = entries["train"] + entries["query"] + gallery_real + distractors
            n_train, n_query, n_real = len(entries["train"]), len(entries["query"]), len(gallery_real)
            images = writer.allocate("images", (len(ordered), c.resolution, c.resolution, 3))
            with progress_bar(len(ordered), "market1501: preprocessing", progress) as bar:
                for k, (name, _) in enumerate(ordered):
                    where = f"{sources.files[ZIP]}:{name}" if archive is not None else sources.files[name]
                    with self.reading(where):
                        source = archive.open(name) if archive is not None else sources.files[name]
                        with Image.open(source) as im:
                            pixels = np.asarray(im.convert("RGB"))
                    if c.fit == "pad":
                        pixels = pad_to_square(pixels)
                    images[k] = resize_images(pixels[None], c.resolution)[0]
                    bar.update()
            images.flush()
        finally:
            if archive is not None:
                archive.close()
        labels = np.array([meta for _, meta in ordered], dtype=np.int64)
        writer.save("classes", labels[:, 0])
        writer.save("extra.camera", labels[:, 1])
        writer.save("extra.sequence", labels[:, 2])
        q0, g0 = n_train, n_train + n_query
        return Layout(
            splits={"train": (0, n_train), "query": (q0, g0), "gallery": (g0, len(ordered)),
                    "test": (q0, g0 + n_real)},
            extras=("camera", "sequence"),
            info={
                "protocol": self.protocol(),
                "paper": "Esser et al. (ICCV 2019) §4.4; the official Market-1501 train/query/gallery protocol",
                "classes": "class id = Market-1501 person id (0 = distractor, gallery only); junk (-1) dropped",
                "n_ids": {"train": len({m[0] for _, m in entries["train"]}),
                          "query": len({m[0] for _, m in entries["query"]})},
                "n_distractors": len(distractors),
                "resize": f"{'pad to square' if c.fit == 'pad' else 'stretch'} -> {c.resolution} px, area averaging",
                "source": HOMEPAGE,
            },
        )
