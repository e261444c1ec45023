"""CelebA (Liu et al. 2015), aligned and cropped: 202,599 face images of 10,177 identities,
178×218 RGB, with an identity file and five landmarks per image.

Class = identity; no ground-truth content (LORD's protocol pairs images through nearest
neighbours in landmark space instead). Split as LORD (Gabbay & Hoshen 2020, A.2): 9,177
identities train, 1,000 held out for test, chosen by a deterministic hash order
(``split_seed``). Preprocessing as LORD's code: the central 128×128 window, then area averaging to
``resolution``. The five landmarks (eyes, nose, mouth corners) are carried along in
``Split.extras["landmarks"]``: (N, 5, 2) float32 (x, y) as fractions of the output image's
width and height.

On disk (``<root>/celeba/``, placed by hand: the files are on Google Drive behind a quota):
``img_align_celeba.zip`` (or its extracted folder ``img_align_celeba/``), ``identity_CelebA.txt``
and ``list_landmarks_align_celeba.txt``, checked against the MD5s torchvision publishes.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from disentbench.datacache import ArrayWriter
from disentbench.images import center_crop, resize_images
from disentbench_plugins.datasets.common import DataMissing, FileDataset, Layout, Sources, held_out, progress_bar

HOMEPAGE = "http://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
MD5 = {  # as published by torchvision's CelebA dataset
    "img_align_celeba.zip": "00d2c5bc6d35e252742224ab0c1e8fcb",
    "identity_CelebA.txt": "32bd1bd63d3c78cd57e08160ec5ed1e2",
    "list_landmarks_align_celeba.txt": "cc24ecafdb5b50baae59b03474781f8c",
}
LANDMARKS = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")


def read_identities(path: Path) -> dict[str, int]:
    """``identity_CelebA.txt``: one "<image> <identity>" per line."""
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = int(parts[1])
    return out


def read_landmarks(path: Path) -> dict[str, np.ndarray]:
    """``list_landmarks_align_celeba.txt``: a count line, a header line, then "<image> x1 y1 ... x5 y5"."""
    out = {}
    for line in Path(path).read_text().splitlines()[2:]:
        parts = line.split()
        if len(parts) == 11:
            out[parts[0]] = np.array(parts[1:], dtype=np.float32).reshape(5, 2)
    return out


@dataclass
class CelebAConfig:
    resolution: int = 64
    crop: int = 128  # LORD: the central 128×128 window of the 178×218 aligned image
    n_test_identities: int = 1000  # LORD: 9,177 train / 1,000 test identities
    split_seed: int = 0

    def __post_init__(self) -> None:
        if not 8 <= self.resolution <= 218 or not 8 <= self.crop <= 178:
            raise ValueError(f"bad resolution {self.resolution} or crop {self.crop} (the source is 178×218)")
        if self.n_test_identities < 1:
            raise ValueError("n_test_identities must be at least 1")


class CelebA(FileDataset):
    """Aligned CelebA with LORD's identity split (module docstring)."""

    name = "celeba"
    homepage = HOMEPAGE
    Config = CelebAConfig

    def protocol(self) -> str:
        return (f"class = identity, no content factors; {self.config.n_test_identities} identities held out "
                f"for test (hash order, split_seed={self.config.split_seed}); extras: landmarks")

    def manual(self, root: Path) -> str:
        folder = self.folder(root)
        return (f"download img_align_celeba.zip, identity_CelebA.txt and list_landmarks_align_celeba.txt from the "
                f"CelebA page ({HOMEPAGE}, 'Align&Cropped Images' and 'Anno' on its Google Drive) and put them "
                f"into {folder} (the zip may also be extracted there as {folder / 'img_align_celeba'})")

    def locate(self, root: Path) -> Sources:
        folder = self.folder(root)
        files, pins, missing = {}, {}, []
        for name in ("identity_CelebA.txt", "list_landmarks_align_celeba.txt"):
            if (folder / name).is_file():
                files[name], pins[name] = folder / name, {"md5": MD5[name]}
            else:
                missing.append(name)
        fingerprint = False
        if (folder / "img_align_celeba.zip").is_file():
            files["img_align_celeba.zip"] = folder / "img_align_celeba.zip"
            pins["img_align_celeba.zip"] = {"md5": MD5["img_align_celeba.zip"]}
            layout = "celeba/img_align_celeba.zip"
        elif (folder / "img_align_celeba").is_dir():
            for p in sorted((folder / "img_align_celeba").glob("*.jpg")):
                files[f"img_align_celeba/{p.name}"] = p
            fingerprint = True
            layout = "celeba/img_align_celeba/ (extracted: identified by names and sizes)"
        else:
            missing.append("img_align_celeba.zip")
        if missing:
            raise DataMissing(
                f"dataset 'celeba': {', '.join(missing)} not found in {folder}. CelebA cannot be downloaded "
                f"automatically (Google Drive quota): {self.manual(root)}."
            )
        return Sources(folder, files, pins, layout=layout, fingerprint_only=fingerprint)

    def build(self, sources: Sources, writer: ArrayWriter, progress: bool) -> Layout:
        from PIL import Image

        c = self.config
        identity = read_identities(sources.files["identity_CelebA.txt"])
        landmarks = read_landmarks(sources.files["list_landmarks_align_celeba.txt"])
        zip_path = sources.files.get("img_align_celeba.zip")
        archive = zipfile.ZipFile(zip_path) if zip_path else None
        try:
            if archive is not None:
                members = {Path(n).name: n for n in archive.namelist() if n.lower().endswith(".jpg")}
            else:
                members = {Path(rel).name: rel for rel in sources.files if rel.startswith("img_align_celeba/")}
            names = sorted(n for n in members if n in identity)
            if not names:
                raise ValueError(f"no image of {sources.folder} is listed in identity_CelebA.txt")
            ids = sorted({identity[n] for n in names})
            test = held_out([str(i) for i in ids], c.n_test_identities, c.split_seed, "celeba")
            is_test = {n: str(identity[n]) in test for n in names}
            order = [n for n in names if not is_test[n]] + [n for n in names if is_test[n]]
            images = writer.allocate("images", (len(order), c.resolution, c.resolution, 3))
            marks = np.full((len(order), 5, 2), np.nan, dtype=np.float32)
            with progress_bar(len(order), "celeba: preprocessing", progress) as bar:
                for k, name in enumerate(order):
                    where = f"{zip_path}:{members[name]}" if archive is not None else sources.files[members[name]]
                    with self.reading(where):
                        source = archive.open(members[name]) if archive is not None else sources.files[members[name]]
                        with Image.open(source) as im:
                            pixels = np.asarray(im.convert("RGB"))
                    h, w = pixels.shape[:2]
                    crop_h, crop_w = min(c.crop, h), min(c.crop, w)
                    top, left = (h - crop_h) // 2, (w - crop_w) // 2
                    images[k] = resize_images(center_crop(pixels, c.crop)[None], c.resolution)[0]
                    if name in landmarks:
                        xy = landmarks[name] - np.array([left, top], dtype=np.float32)
                        marks[k] = xy / np.array([crop_w, crop_h], dtype=np.float32)
                    bar.update()
            images.flush()
        finally:
            if archive is not None:
                archive.close()
        writer.save("classes", np.array([identity[n] for n in order], dtype=np.int64))
        writer.save("extra.landmarks", marks)
        writer.save("extra.image_id", np.array([int(Path(n).stem) for n in order], dtype=np.int64))
        n_train = sum(not is_test[n] for n in names)
        return Layout(
            splits={"train": (0, n_train), "test": (n_train, len(order))},
            extras=("landmarks", "image_id"),
            info={
                "protocol": self.protocol(),
                "paper": "LORD (Gabbay & Hoshen, ICLR 2020) A.2: 9,177 train / 1,000 test identities",
                "n_identities": {"train": len(ids) - len(test), "test": len(test)},
                "classes": "class id = CelebA identity number",
                "test_identities": sorted(int(i) for i in test),
                "landmarks": f"extra 'landmarks' (N, 5, 2) float32 (x, y) as fractions of the image width/height, "
                             f"order {', '.join(LANDMARKS)}; NaN where the image has none",
                "image_id": "extra 'image_id': the number of the CelebA file (000001.jpg -> 1)",
                "resize": f"centre crop {c.crop} -> {c.resolution} px, area averaging",
                "source": HOMEPAGE,
            },
        )
