"""KTH actions (Schüldt, Laptev & Caputo 2004): videos of 25 people doing 6 actions (walking,
jogging, running, boxing, hand waving, hand clapping) in 4 scenarios, 160×120 grey at 25 fps.

Class = person; no ground-truth content (the pose is whatever the frame shows). Split as LORD
(Gabbay & Hoshen 2020, A.2): every person trains; 10% of the frames are held out for test,
chosen by a deterministic hash order of (video, frame) (``split_seed``). Frames are centre-cropped
to a square (120×120) and area-averaged to ``resolution``, one grey channel. Per-frame annotations
in ``Split.extras``: ``action`` (0-5, in the order above), ``scenario`` (1-4), ``video`` and
``frame``.

On disk: the six archives ``walking.zip`` ... ``handclapping.zip`` from the KTH page, installed as
``<root>/kth/<action>/personNN_<action>_dK_uncomp.avi`` (any ``*.avi`` under ``<root>/kth/`` named
that way is found). No checksums are published. Decoding the AVI files needs OpenCV
(``pip install opencv-python-headless``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from disentbench.contracts import Unavailable
from disentbench.datacache import ArrayWriter
from disentbench.download import ArchiveContents, Resource, safe_extract
from disentbench.images import center_crop, resize_images
from disentbench_plugins.datasets.common import (
    DOWNLOADS,
    DataMissing,
    FileDataset,
    Layout,
    Sources,
    progress_bar,
    rank_by_hash,
)

BASE_URL = "http://www.csc.kth.se/cvap/actions/"
ACTIONS = ("walking", "jogging", "running", "boxing", "handwaving", "handclapping")
# No checksum is published: each zip must hold at least 99 videos (25 people × 4 scenarios; one
# handclapping video, person13_handclapping_d3, is missing from the dataset).
MIN_VIDEOS = 99
VIDEO_RE = re.compile(r"^person(\d+)_([a-z]+)_d(\d+)(?:_uncomp)?\.avi$")


def read_video(path: Path) -> np.ndarray:
    """All frames of an AVI file as grey uint8 (T, H, W), via OpenCV."""
    try:
        import cv2
    except ImportError:
        raise Unavailable("decoding KTH's AVI videos needs OpenCV: `pip install opencv-python-headless`") from None
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: OpenCV cannot open this video (corrupt or unsupported codec)")
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame)
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{path}: no frame could be decoded")
    return np.stack(frames)


@dataclass
class KTHConfig:
    resolution: int = 64
    frame_step: int = 1  # keep every k-th frame of each video (1 = all, as LORD)
    test_fraction: float = 0.1  # LORD: 10% of the images held out
    split_seed: int = 0

    def __post_init__(self) -> None:
        if not 8 <= self.resolution <= 120 or self.frame_step < 1:
            raise ValueError(f"bad resolution {self.resolution} or frame_step {self.frame_step}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


class KTH(FileDataset):
    """KTH actions, frames with person labels (module docstring)."""

    name = "kth"
    homepage = "https://www.csc.kth.se/cvap/actions/"
    Config = KTHConfig

    def protocol(self) -> str:
        return (f"class = person, no content factors; all people train, {self.config.test_fraction:.0%} of the "
                f"frames held out (hash order, split_seed={self.config.split_seed}); extras: action, scenario, "
                "video, frame")

    def downloads(self) -> list[Resource]:
        return [Resource(f"{DOWNLOADS}/kth/{a}.zip", url=f"{BASE_URL}{a}.zip",
                         contents=ArchiveContents(at_least={"*.avi": MIN_VIDEOS})) for a in ACTIONS]

    def install(self, root: Path, files: list[Path], progress: bool) -> None:
        for action, archive in zip(ACTIONS, files):
            safe_extract(archive, Path(root) / "kth" / action)

    def manual(self, root: Path) -> str:
        return (f"download {', '.join(a + '.zip' for a in ACTIONS)} from {BASE_URL} and extract each into "
                f"{self.folder(root)}/<action>/ (or put the zips into {Path(root) / DOWNLOADS / 'kth'})")

    def locate(self, root: Path) -> Sources:
        folder = self.folder(root)
        videos = sorted(p for p in folder.rglob("*.avi") if VIDEO_RE.match(p.name)) if folder.is_dir() else []
        found = {VIDEO_RE.match(p.name).group(2) for p in videos}
        missing = [a for a in ACTIONS if a not in found]
        if missing:
            raise DataMissing(
                f"dataset 'kth': no videos of {', '.join(missing)} under {folder}. Run `disentbench data fetch kth "
                f"--data-dir {Path(root)}` to download them, or {self.manual(root)}."
            )
        return Sources(folder, {str(p.relative_to(folder)): p for p in videos}, {},
                       layout=f"kth/ ({len(videos)} videos)")

    def build(self, sources: Sources, writer: ArrayWriter, progress: bool) -> Layout:
        c = self.config
        rels = sorted(sources.files, key=lambda r: Path(r).name)
        frames, meta = [], []
        with progress_bar(len(rels), "kth: decoding videos", progress) as bar:
            for v, rel in enumerate(rels):
                person, action, scenario = VIDEO_RE.match(Path(rel).name).groups()
                with self.reading(sources.files[rel]):
                    video = read_video(sources.files[rel])
                keep = np.arange(0, len(video), c.frame_step)
                side = min(video.shape[1:])
                small = resize_images(np.stack([center_crop(f, side) for f in video[keep]])[..., None], c.resolution)
                frames.append(small)
                meta.append(np.stack([np.full(len(keep), int(person)), np.full(len(keep), ACTIONS.index(action)),
                                      np.full(len(keep), int(scenario)), np.full(len(keep), v), keep], 1))
                bar.update()
        table = np.concatenate(meta).astype(np.int64)  # person, action, scenario, video, frame
        names = [f"{Path(rels[v]).stem}:{f}" for v, f in zip(table[:, 3].tolist(), table[:, 4].tolist())]
        n_test = int(round(c.test_fraction * len(names)))
        test = set(rank_by_hash(names, f"kth:{c.split_seed}")[:n_test])
        is_test = np.array([n in test for n in names])
        order = np.concatenate([np.flatnonzero(~is_test), np.flatnonzero(is_test)])
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        images = writer.allocate("images", (len(order), c.resolution, c.resolution, 1))
        start = 0
        for block in frames:  # scatter each video's frames to their places in split order
            images[position[start : start + len(block)]] = block
            start += len(block)
        images.flush()
        table = table[order]
        writer.save("classes", table[:, 0])
        for k, key in enumerate(("action", "scenario", "video", "frame")):
            writer.save(f"extra.{key}", table[:, k + 1])
        n_train = int((~is_test).sum())
        return Layout(
            splits={"train": (0, n_train), "test": (n_train, len(order))},
            extras=("action", "scenario", "video", "frame"),
            info={
                "protocol": self.protocol(),
                "paper": "LORD (Gabbay & Hoshen, ICLR 2020) A.2: all identities train, 10% of the images held out",
                "classes": "class id = person number (1-25)",
                "n_videos": len(rels),
                "actions": list(ACTIONS),
                "videos": [Path(r).stem for r in rels],
                "resize": f"centre square crop -> {c.resolution} px, area averaging, grey; every "
                          f"{c.frame_step} frame(s)",
                "source": BASE_URL,
            },
        )
