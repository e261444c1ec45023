"""Chairs (Aubry et al. 2014, "Seeing 3D chairs"): 1393 chair CAD models rendered from 62 views
(31 azimuths × 2 elevations), 600×600 RGB on white.

Class = chair model; content = view as (azimuth, elevation), read from the file names. Split as
the C-S disentanglement paper (ICLR 2021 submission, appendix B): 100 models held out for test,
chosen by a deterministic hash order (``split_seed``) and listed in ``info``. Images are
centre-cropped to ``crop`` px (400 by default, the common choice that removes the empty border)
and area-averaged to ``resolution``.

On disk: ``rendered_chairs.tar`` extracts to ``rendered_chairs/<model>/renders/image_<k>_p<elevation>
_t<azimuth>_r<distance>.png``; it is installed as ``<root>/chairs/rendered_chairs/``
(``<root>/rendered_chairs/`` is accepted too). No checksum is published: the folder is identified
by its file names and sizes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from disentbench.datacache import ArrayWriter
from disentbench.download import ArchiveContents, Resource, safe_extract
from disentbench.images import center_crop, resize_images
from disentbench_plugins.datasets.common import (
    DOWNLOADS,
    DataMissing,
    FileDataset,
    Layout,
    Sources,
    held_out,
    progress_bar,
)

URL = "https://www.di.ens.fr/willow/research/seeing3Dchairs/data/rendered_chairs.tar"
VIEW_RE = re.compile(r"_p(\d+)_t(\d+)_")
# No checksum is published: a download counts as complete only if it holds every render
# (1393 models × 62 views), so a transfer cut at a member boundary is never installed.
N_RENDERS = 1393 * 62


@dataclass
class ChairsConfig:
    resolution: int = 64
    crop: int = 400  # centre crop (px of the 600 px renders) before resizing; 0 keeps the whole image
    n_test_models: int = 100
    split_seed: int = 0

    def __post_init__(self) -> None:
        if not 8 <= self.resolution <= 600 or self.crop < 0:
            raise ValueError(f"bad resolution {self.resolution} or crop {self.crop}")
        if self.n_test_models < 1:
            raise ValueError("n_test_models must be at least 1")


class Chairs(FileDataset):
    """Aubry et al.'s rendered chairs (module docstring)."""

    name = "chairs"
    homepage = "https://www.di.ens.fr/willow/research/seeing3Dchairs/"
    Config = ChairsConfig

    def protocol(self) -> str:
        return (f"class = chair model, content = view (azimuth × elevation); {self.config.n_test_models} models "
                f"held out for test (hash order, split_seed={self.config.split_seed})")

    def downloads(self) -> list[Resource]:
        return [Resource(f"{DOWNLOADS}/rendered_chairs.tar", url=URL,
                         contents=ArchiveContents(at_least={"rendered_chairs/*/renders/*.png": N_RENDERS}))]

    def install(self, root: Path, files: list[Path], progress: bool) -> None:
        safe_extract(files[0], Path(root) / "chairs")

    def manual(self, root: Path) -> str:
        return (f"extract rendered_chairs.tar ({URL}) so that {Path(root) / 'chairs' / 'rendered_chairs'}/<model>/"
                f"renders/*.png exist, or put the tar at {Path(root) / DOWNLOADS / 'rendered_chairs.tar'}")

    def locate(self, root: Path) -> Sources:
        root = Path(root)
        for folder in (root / "chairs" / "rendered_chairs", root / "rendered_chairs", root / "chairs"):
            renders = sorted(folder.glob("*/renders/*.png")) if folder.is_dir() else []
            if renders:
                files = {str(p.relative_to(folder)): p for p in renders}
                return Sources(folder, files, {}, layout=f"{folder.name}/<model>/renders/*.png",
                               fingerprint_only=True)
        raise DataMissing(
            f"dataset 'chairs' not found: no {root / 'chairs' / 'rendered_chairs'}/<model>/renders/*.png. Run "
            f"`disentbench data fetch chairs --data-dir {root}` to download {URL}, or {self.manual(root)}."
        )

    def build(self, sources: Sources, writer: ArrayWriter, progress: bool) -> Layout:
        from PIL import Image

        c = self.config
        by_model: dict[str, list[str]] = {}
        for rel in sorted(sources.files):
            by_model.setdefault(rel.split("/", 1)[0], []).append(rel)
        models = sorted(by_model)
        views = {rel: VIEW_RE.search(Path(rel).name) for rel in sources.files}
        if all(views.values()):  # the real naming: elevation p, azimuth t in degrees
            elevations = sorted({int(m.group(1)) for m in views.values()})
            azimuths = sorted({int(m.group(2)) for m in views.values()})
            factor_of = {rel: (azimuths.index(int(m.group(2))), elevations.index(int(m.group(1))))
                         for rel, m in views.items()}
            names, sizes = ("azimuth", "elevation"), (len(azimuths), len(elevations))
            values = {"azimuths_deg": azimuths, "elevations_deg": elevations}
        else:  # other naming: the k-th render of a model is view k
            factor_of = {rel: (k,) for rels in by_model.values() for k, rel in enumerate(rels)}
            names, sizes = ("view",), (max(len(r) for r in by_model.values()),)
            values = {"views": "view k = k-th file of a model in name order (file names carry no angles)"}
        test = held_out(models, c.n_test_models, c.split_seed, "chairs")
        order = [m for m in models if m not in test] + [m for m in models if m in test]
        rels = [rel for m in order for rel in by_model[m]]
        images = writer.allocate("images", (len(rels), c.resolution, c.resolution, 3))
        class_of = {m: k for k, m in enumerate(models)}
        k = 0
        with progress_bar(len(rels), "chairs: preprocessing", progress) as bar:
            for m in order:
                batch = []
                for rel in by_model[m]:
                    with self.reading(sources.files[rel]), Image.open(sources.files[rel]) as im:
                        pixels = np.asarray(im.convert("RGB"))
                    batch.append(center_crop(pixels, c.crop) if c.crop else pixels)
                shapes = {b.shape for b in batch}
                if len(shapes) != 1:
                    raise ValueError(f"chair {m}: renders differ in size {sorted(shapes)}")
                images[k : k + len(batch)] = resize_images(np.stack(batch), c.resolution)
                k += len(batch)
                bar.update(len(batch))
        images.flush()
        writer.save("classes", np.array([class_of[rel.split("/", 1)[0]] for rel in rels], dtype=np.int64))
        writer.save("factors", np.array([factor_of[rel] for rel in rels], dtype=np.int64))
        n_train = sum(len(by_model[m]) for m in models if m not in test)
        test_models = [m for m in models if m in test]
        return Layout(
            splits={"train": (0, n_train), "test": (n_train, len(rels))},
            factor_names=names,
            factor_sizes=sizes,
            info={
                "protocol": self.protocol(),
                "paper": "C-S disentanglement (ICLR 2021 submission) appendix B: 100 of 1393 models held out",
                "n_models": len(models),
                "test_models": test_models,
                "classes": "class id = position of the model folder in name order",
                **values,
                "resize": f"centre crop {c.crop or 'none'} -> {c.resolution} px, area averaging",
                "source": URL,
            },
        )
