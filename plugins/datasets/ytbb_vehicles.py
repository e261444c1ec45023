"""YouTube-BoundingBoxes vehicles (Xiao, Liu & Lee 2019, §4 and Table 2): crops of cars, buses or
trucks tracked through YouTube clips. Class = clip (one vehicle instance); no ground-truth content
(pose changes along a clip).

Xiao et al. built it from YouTube-BoundingBoxes (Real et al. 2017): they downloaded the videos of
the car, bus and truck classes, detected the vehicles with a Faster R-CNN trained on MS COCO, kept
detections with confidence ≥ 0.9 and cropped them, giving 2233/186 (car), 3008/302 (bus) and
1833/137 (truck) train/test clips. Neither the crops nor the detections are published, and the
videos must be fetched from YouTube, so this dataset is placed by hand, in this layout under
``<root>/ytbb-vehicles/``::

    car/train/<clip id>/<frame>.jpg|png    car/test/<clip id>/<frame>.jpg|png
    bus/...                                 truck/...

(or ``<category>/<clip id>/<frame>`` without train/ and test/, in which case ``n_test_clips`` clips
are held out by a deterministic hash order, ``split_seed``). Crops are stretched to a square and
area-averaged to ``resolution`` (the paper generates 128×128 images: ``resolution = 128``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from disentbench.datacache import ArrayWriter
from disentbench.images import resize_images
from disentbench_plugins.datasets.common import DataMissing, FileDataset, Layout, Sources, held_out, progress_bar

HOMEPAGE = "https://research.google.com/youtube-bb/"
EXTENSIONS = (".jpg", ".jpeg", ".png")
PAPER_TEST_CLIPS = {"car": 186, "bus": 302, "truck": 137}  # Xiao et al. §4


@dataclass
class YTBBVehiclesConfig:
    category: Literal["car", "bus", "truck"] = "car"
    resolution: int = 64
    n_test_clips: int = 0  # held out when the folder has no train/test split; 0 = the paper's count (at most a tenth)
    split_seed: int = 0

    def __post_init__(self) -> None:
        if not 8 <= self.resolution <= 256:
            raise ValueError(f"resolution {self.resolution} must be between 8 and 256")
        if self.n_test_clips < 0:
            raise ValueError("n_test_clips must be >= 0")


class YTBBVehicles(FileDataset):
    """Vehicle crops from YouTube-BoundingBoxes clips, placed by hand (module docstring)."""

    name = "ytbb-vehicles"
    homepage = HOMEPAGE
    Config = YTBBVehiclesConfig

    def protocol(self) -> str:
        c = self.config
        return (f"category {c.category}; class = clip (vehicle instance), no content factors; the train/test clips "
                f"as placed (or {c.n_test_clips or PAPER_TEST_CLIPS[c.category]} clips held out by hash order)")

    def manual(self, root: Path) -> str:
        folder = self.folder(root) / self.config.category
        return (f"build the crops as Xiao et al. (2019, §4) did: download the YouTube-BoundingBoxes videos "
                f"({HOMEPAGE}) of class {self.config.category}, detect vehicles with a COCO-trained Faster R-CNN, keep "
                f"detections with confidence >= 0.9, and save each clip's crops as images in "
                f"{folder / 'train' / '<clip id>'} and {folder / 'test' / '<clip id>'} (or all clips in "
                f"{folder / '<clip id>'} to hold out {PAPER_TEST_CLIPS[self.config.category]} of them)")

    @staticmethod
    def _clips(folder: Path) -> dict[str, list[Path]]:
        out = {}
        for clip in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
            frames = sorted(p for p in clip.iterdir() if p.suffix.lower() in EXTENSIONS)
            if frames:
                out[clip.name] = frames
        return out

    def locate(self, root: Path) -> Sources:
        base = self.folder(root) / self.config.category
        if (base / "train").is_dir() and (base / "test").is_dir():
            groups = {"train": self._clips(base / "train"), "test": self._clips(base / "test")}
            layout = f"ytbb-vehicles/{self.config.category}/{{train,test}}/<clip>/ (placed split)"
        else:
            groups = {"all": {k: v for k, v in self._clips(base).items() if k not in ("train", "test")}}
            layout = f"ytbb-vehicles/{self.config.category}/<clip>/ (held out by hash order)"
        if not any(groups.values()) or any(not clips for clips in groups.values()):
            raise DataMissing(f"dataset 'ytbb-vehicles': no clip folders of {self.config.category} crops under {base}. "
                              f"They cannot be downloaded (the crops were never published): {self.manual(root)}.")
        files = {f"{group}/{clip}/{frame.name}": frame
                 for group, clips in groups.items() for clip, frames in clips.items() for frame in frames}
        return Sources(base, files, {}, layout=layout, fingerprint_only=True, extra={"groups": sorted(groups)})

    def build(self, sources: Sources, writer: ArrayWriter, progress: bool) -> Layout:
        from PIL import Image

        c = self.config
        clips: dict[str, dict[str, list[str]]] = {}
        for rel in sources.files:
            group, clip, _ = rel.split("/", 2)
            clips.setdefault(group, {}).setdefault(clip, []).append(rel)
        if "all" in clips:
            names = sorted(clips["all"])
            n_test = c.n_test_clips or min(PAPER_TEST_CLIPS[c.category], max(1, len(names) // 10))
            test = held_out(names, n_test, c.split_seed, f"ytbb-{c.category}")
            split_of = {name: "test" if name in test else "train" for name in names}
            by_split = {s: {n: clips["all"][n] for n in names if split_of[n] == s} for s in ("train", "test")}
        else:
            by_split = {s: clips.get(s, {}) for s in ("train", "test")}
        ordered = [(split, clip, rel) for split in ("train", "test") for clip in sorted(by_split[split])
                   for rel in sorted(by_split[split][clip])]
        clip_ids = {key: k for k, key in enumerate(sorted({(s, clip) for s, clip, _ in ordered}))}
        images = writer.allocate("images", (len(ordered), c.resolution, c.resolution, 3))
        with progress_bar(len(ordered), "ytbb-vehicles: preprocessing", progress) as bar:
            for k, (_, _, rel) in enumerate(ordered):
                with self.reading(sources.files[rel]), Image.open(sources.files[rel]) as im:
                    pixels = np.asarray(im.convert("RGB"))
                images[k] = resize_images(pixels[None], c.resolution)[0]
                bar.update()
        images.flush()
        writer.save("classes", np.array([clip_ids[(s, clip)] for s, clip, _ in ordered], dtype=np.int64))
        n_train = sum(s == "train" for s, _, _ in ordered)
        return Layout(
            splits={"train": (0, n_train), "test": (n_train, len(ordered))},
            info={
                "protocol": self.protocol(),
                "paper": "Xiao, Liu & Lee 2019, §4: YTBB car/bus/truck clips, 128x128",
                "category": c.category,
                "n_clips": {s: len(by_split[s]) for s in ("train", "test")},
                "classes": "class id = clip (train clips first, then test clips, each in name order)",
                "resize": f"stretch to a square -> {c.resolution} px, area averaging",
                "source": f"{HOMEPAGE} (crops built by hand; see the dataset's docstring)",
            },
        )
