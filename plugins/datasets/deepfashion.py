"""DeepFashion In-shop Clothes Retrieval (Liu et al. 2016): 52,712 photos of 7,982 clothing items,
each worn by a model in several poses, 256×256 RGB (Esser et al. 2019, §4.4 and Table 2).

Class = clothing item (``id_XXXXXXXX``: appearance); no ground-truth content (pose is measured by
a keypoint detector, as for Market-1501). The official retrieval partition
(``list_eval_partition.txt``): ``train`` (3,997 items), ``query`` and ``gallery`` (the other 3,985
items), and ``test`` = query + gallery (what the generic metrics use). Images are padded to a
square if they are not one and area-averaged to ``resolution``.

On disk (``<root>/deepfashion/``, placed by hand: the images are released only behind the
authors' agreement, in a password-protected zip): the extracted ``img/`` folder
(``img/WOMEN/Dresses/id_00000002/02_1_front.jpg`` …), or ``img.zip`` if it opens without a
password, and ``list_eval_partition.txt`` (from the benchmark's ``Eval/`` folder, also accepted at
``Eval/list_eval_partition.txt``). No checksum is published.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from disentbench.datacache import ArrayWriter
from disentbench.images import pad_to_square, resize_images
from disentbench_plugins.datasets.common import DataMissing, FileDataset, Layout, Sources, progress_bar

HOMEPAGE = "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html"
PARTITION = "list_eval_partition.txt"
ZIP = "img.zip"
SPLITS = ("train", "query", "gallery")


def read_partition(path: Path) -> list[tuple[str, str, str]]:
    """``list_eval_partition.txt``: a count line, a header line, then "<image> <item id> <status>"."""
    out = []
    for line in Path(path).read_text().splitlines()[2:]:
        parts = line.split()
        if len(parts) == 3 and parts[2] in SPLITS:
            out.append((parts[0], parts[1], parts[2]))
    if not out:
        raise ValueError(f"{path} lists no image with status train, query or gallery")
    return out


@dataclass
class DeepFashionConfig:
    resolution: int = 64
    fit: Literal["pad", "stretch"] = "pad"  # how a non-square photo becomes square

    def __post_init__(self) -> None:
        if not 8 <= self.resolution <= 256:
            raise ValueError(f"resolution {self.resolution} must be between 8 and 256")


class DeepFashion(FileDataset):
    """DeepFashion In-shop with the official train / query / gallery partition (module docstring)."""

    name = "deepfashion"
    homepage = HOMEPAGE
    Config = DeepFashionConfig

    def protocol(self) -> str:
        return ("class = clothing item, no content factors; official In-shop retrieval partition: train, "
                "query, gallery; test = query + gallery")

    def manual(self, root: Path) -> str:
        folder = self.folder(root)
        return (f"request the In-shop Clothes Retrieval Benchmark from {HOMEPAGE} (the image zip needs the "
                f"password the authors send), extract its img.zip into {folder} so that {folder / 'img'} holds "
                f"MEN/ and WOMEN/, and put Eval/{PARTITION} into {folder}")

    def locate(self, root: Path) -> Sources:
        folder = self.folder(root)
        partition = next((p for p in (folder / PARTITION, folder / "Eval" / PARTITION) if p.is_file()), None)
        files: dict[str, Path] = {}
        missing = []
        if partition is None:
            missing.append(PARTITION)
        else:
            files[PARTITION] = partition
        fingerprint = False
        if (folder / "img").is_dir():
            photos = sorted((folder / "img").rglob("*.jpg"))
            files.update({p.relative_to(folder).as_posix(): p for p in photos})
            fingerprint = True
            layout = "deepfashion/img/ (extracted: identified by names and sizes)"
            if not photos:
                missing.append("the photos in img/ (it is empty)")
        elif (folder / ZIP).is_file():
            files[ZIP] = folder / ZIP
            layout = f"deepfashion/{ZIP}"
        else:
            missing.append("img/ (or img.zip)")
            layout = ""
        if missing:
            raise DataMissing(f"dataset 'deepfashion': {', '.join(missing)} not found in {folder}. DeepFashion is not "
                              f"downloaded automatically: {self.manual(root)}.")
        return Sources(folder, files, {}, layout=layout, fingerprint_only=fingerprint)

    def build(self, sources: Sources, writer: ArrayWriter, progress: bool) -> Layout:
        from PIL import Image

        c = self.config
        entries = read_partition(sources.files[PARTITION])
        archive = zipfile.ZipFile(sources.files[ZIP]) if ZIP in sources.files else None
        try:
            if archive is not None:
                members = {n.split("img/", 1)[-1]: n for n in archive.namelist() if n.lower().endswith(".jpg")}
                encrypted = [i for i in archive.infolist()[:5] if i.flag_bits & 0x1]
                if encrypted:
                    raise ValueError(f"{sources.files[ZIP]} is password-protected: extract it with the password the "
                                     f"DeepFashion authors give you, so that {sources.folder / 'img'} exists, and "
                                     "remove the zip")
            else:
                members = {rel.split("img/", 1)[-1]: rel for rel in sources.files if rel.startswith("img/")}
            present = [(img, item, status) for img, item, status in entries if img.split("img/", 1)[-1] in members]
            if not present:
                raise ValueError(f"none of the images listed in {PARTITION} is in {sources.folder}")
            ordered = [e for split in SPLITS for e in present if e[2] == split]
            counts = {split: sum(e[2] == split for e in present) for split in SPLITS}
            if not all(counts.values()):
                raise ValueError(f"{sources.folder}: found {counts} images per split; every split needs some")
            images = writer.allocate("images", (len(ordered), c.resolution, c.resolution, 3))
            with progress_bar(len(ordered), "deepfashion: preprocessing", progress) as bar:
                for k, (img, _, _) in enumerate(ordered):
                    member = members[img.split("img/", 1)[-1]]
                    where = f"{sources.files[ZIP]}:{member}" if archive is not None else sources.files[member]
                    with self.reading(where):
                        source = archive.open(member) if archive is not None else sources.files[member]
                        with Image.open(source) as im:
                            pixels = np.asarray(im.convert("RGB"))
                    if c.fit == "pad":
                        pixels = pad_to_square(pixels, value=255)  # the photos have white backgrounds
                    images[k] = resize_images(pixels[None], c.resolution)[0]
                    bar.update()
            images.flush()
        finally:
            if archive is not None:
                archive.close()
        items = sorted({item for _, item, _ in ordered})
        item_id = {item: int(item.split("_")[-1]) for item in items}
        writer.save("classes", np.array([item_id[item] for _, item, _ in ordered], dtype=np.int64))
        n_train, n_query = counts["train"], counts["query"]
        return Layout(
            splits={"train": (0, n_train), "query": (n_train, n_train + n_query),
                    "gallery": (n_train + n_query, len(ordered)), "test": (n_train, len(ordered))},
            info={
                "protocol": self.protocol(),
                "paper": "Esser et al. (ICCV 2019) §4.4 and Table 2; the official In-shop retrieval partition",
                "classes": "class id = the number of the In-shop item id (id_00000080 -> 80)",
                "n_items": {split: len({e[1] for e in ordered if e[2] == split}) for split in SPLITS},
                "n_listed_missing": len(entries) - len(present),
                "resize": f"{'pad to square (white)' if c.fit == 'pad' else 'stretch'} -> {c.resolution} px, "
                          "area averaging",
                "source": HOMEPAGE,
            },
        )
