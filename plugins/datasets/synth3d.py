"""synth3d: procedurally rendered 3-D objects with exact ground truth, generated offline.

Each class is one object: 3-5 coloured ellipsoids at random positions, sizes and orientations
(asymmetric, so every view is distinct), drawn from a generator seeded by (seed, class id). Each
object is ray-cast orthographically under a grid of azimuths × elevations with Lambertian shading
from a light fixed to the camera, supersampled 2× and area-averaged. Content = (azimuth,
elevation). Test classes are held out, as Cars3D's 163/20 split is.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from disentbench.contracts import DataBundle, Split
from disentbench.datacache import publish

RENDER_VERSION = 1  # bump when the renderer changes, so caches are rebuilt


@dataclass
class Synth3DConfig:
    n_train_classes: int = 100
    n_test_classes: int = 20
    n_azimuths: int = 24
    n_elevations: int = 4
    max_elevation: float = 40.0  # degrees; elevations are spaced evenly in [0, max_elevation]
    resolution: int = 64
    min_parts: int = 3
    max_parts: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resolution < 8:
            raise ValueError(f"resolution {self.resolution} is too small (at least 8)")
        if self.n_train_classes < 2 or self.n_test_classes < 2:
            raise ValueError("synth3d needs at least 2 training and 2 test classes")
        if not 1 <= self.min_parts <= self.max_parts:
            raise ValueError("need 1 <= min_parts <= max_parts")


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


@dataclass
class Shape:
    centers: np.ndarray  # (K, 3)
    axes: np.ndarray  # (K, 3) semi-axes
    rotations: np.ndarray  # (K, 3, 3)
    colors: np.ndarray  # (K, 3) in [0, 1]


def make_shape(seed: int, class_id: int, min_parts: int, max_parts: int) -> Shape:
    """The object of one class: a function of (seed, class id) only."""
    rng = np.random.default_rng([seed, class_id, 1234])
    k = int(rng.integers(min_parts, max_parts + 1))
    centers = rng.uniform(-0.45, 0.45, size=(k, 3))
    centers[0] = 0.0  # a body at the centre keeps the object compact
    axes = rng.uniform(0.12, 0.45, size=(k, 3))
    axes[0] = rng.uniform(0.3, 0.5, size=3)
    rotations = np.stack([_rotation(rng) for _ in range(k)])
    base_hue = rng.uniform()
    colors = np.stack([
        _hsv_to_rgb((base_hue + rng.uniform(-0.25, 0.25)) % 1.0, rng.uniform(0.45, 1.0), rng.uniform(0.6, 1.0))
        for _ in range(k)
    ])
    return Shape(centers, axes, rotations, colors)


def view_rotation(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Object → camera rotation: turn the object by the azimuth about the vertical axis, then tilt
    the view by the elevation."""
    a, e = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return rx @ ry


LIGHT = np.array([0.5, -0.6, 0.62]) / np.linalg.norm([0.5, -0.6, 0.62])  # camera frame: from the upper left, into the scene
BACKGROUND = np.array([0.08, 0.08, 0.1], dtype=np.float32)


def render(shape: Shape, rotation: np.ndarray, resolution: int, supersample: int = 2) -> np.ndarray:
    """Ray-cast one view; returns uint8 (resolution, resolution, 3).

    Rays are orthographic along +z in the camera frame. Each ellipsoid is intersected only with
    the block of pixels its bounding sphere covers."""
    n = resolution * supersample
    half_width = np.float32(0.9)
    coords = ((np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0) * half_width
    rotation = rotation.astype(np.float32)
    direction = np.array([0.0, 0.0, 1.0], dtype=np.float32) @ rotation  # R^T e_z, in the object frame
    best_t = np.full((n, n), np.inf, dtype=np.float32)
    best_k = np.full((n, n), -1)
    best_normal = np.zeros((n, n, 3), dtype=np.float32)
    for k in range(len(shape.axes)):
        q = shape.rotations[k].astype(np.float32)
        a = shape.axes[k].astype(np.float32)
        centre = shape.centers[k].astype(np.float32)
        cx, cy, _ = rotation @ centre  # centre in the camera frame
        r = float(a.max()) * 1.01
        cols = np.flatnonzero(np.abs(coords - cx) <= r)  # image x grows with u
        rows = np.flatnonzero(np.abs(-coords - cy) <= r)  # image rows go down, v goes up
        if len(cols) == 0 or len(rows) == 0:
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        u, v = np.meshgrid(coords[c0:c1], -coords[r0:r1])
        origin_cam = np.stack([u, v, np.full_like(u, -3.0)], axis=-1)
        o = ((origin_cam @ rotation - centre) @ q) / a  # local unit-sphere coordinates
        d = (direction @ q) / a
        A = float(d @ d)
        B = o @ d
        C = np.einsum("ijk,ijk->ij", o, o) - 1.0
        disc = B * B - A * C
        hit = disc > 0
        t = np.full(B.shape, np.inf, dtype=np.float32)
        t[hit] = (-B[hit] - np.sqrt(disc[hit])) / A
        block_t = best_t[r0:r1, c0:c1]
        closer = hit & (t < block_t)
        if closer.any():
            block_t[closer] = t[closer]
            best_k[r0:r1, c0:c1][closer] = k
            p_local = o[closer] + t[closer, None] * d
            best_normal[r0:r1, c0:c1][closer] = (p_local / a) @ q.T  # quadric gradient, object frame
    img = np.empty((n, n, 3), dtype=np.float32)
    img[:] = BACKGROUND
    hit = best_k >= 0
    if hit.any():
        normal = best_normal[hit] @ rotation.T  # object → camera frame
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        lambert = np.clip(-(normal @ LIGHT.astype(np.float32)), 0.0, 1.0)
        img[hit] = shape.colors[best_k[hit]] * (0.3 + 0.7 * lambert)[:, None]
    if supersample > 1:
        img = img.reshape(resolution, supersample, resolution, supersample, 3).mean(axis=(1, 3))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


class Synth3D:
    """The built-in offline dataset (see the module docstring)."""

    Config = Synth3DConfig

    def __init__(self, config: Synth3DConfig | None = None) -> None:
        self.config = config or Synth3DConfig()

    def key(self) -> str:
        payload = json.dumps({"render": RENDER_VERSION, **asdict(self.config)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def factor_values(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        azimuths = np.arange(c.n_azimuths) * 360.0 / c.n_azimuths
        elevations = np.linspace(0.0, c.max_elevation, c.n_elevations) if c.n_elevations > 1 else np.zeros(1)
        return azimuths, elevations

    def generate(self, class_ids: np.ndarray, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render every view of the given classes: (images, classes, factors)."""
        from tqdm.auto import tqdm

        c = self.config
        azimuths, elevations = self.factor_values()
        views = [(a, e) for a in range(c.n_azimuths) for e in range(c.n_elevations)]
        rotations = [view_rotation(azimuths[a], elevations[e]) for a, e in views]
        images = np.empty((len(class_ids) * len(views), c.resolution, c.resolution, 3), dtype=np.uint8)
        for k, cid in enumerate(tqdm(class_ids, desc="synth3d: rendering", disable=not progress, leave=False)):
            shape = make_shape(c.seed, int(cid), c.min_parts, c.max_parts)
            for v, rot in enumerate(rotations):
                images[k * len(views) + v] = render(shape, rot, c.resolution)
        classes = np.repeat(np.asarray(class_ids, dtype=np.int64), len(views))
        factors = np.tile(np.asarray(views, dtype=np.int64), (len(class_ids), 1))
        return images, classes, factors

    def load(self, data_dir: Path, cache_dir: Path, *, progress: bool = True) -> DataBundle:
        c = self.config
        folder = Path(cache_dir) / f"synth3d-{self.key()}"
        if not (folder / "done").exists():
            class_ids = np.arange(c.n_train_classes + c.n_test_classes)
            images, classes, factors = self.generate(class_ids, progress=progress)
            tmp = folder.with_name(folder.name + f".tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")
            tmp.mkdir(parents=True)
            np.save(tmp / "images.npy", images)
            np.save(tmp / "classes.npy", classes)
            np.save(tmp / "factors.npy", factors)
            (tmp / "done").write_text("ok\n")
            publish(tmp, folder, "done")  # a parallel worker's finished copy is kept, never removed
        images = np.load(folder / "images.npy", mmap_mode="r")
        classes = np.load(folder / "classes.npy")
        factors = np.load(folder / "factors.npy")
        is_train = classes < c.n_train_classes
        names, sizes = ("azimuth", "elevation"), (c.n_azimuths, c.n_elevations)

        def split(mask: np.ndarray) -> Split:
            idx = np.flatnonzero(mask)
            return Split(np.asarray(images[idx]), classes[idx], factors[idx], names, sizes)

        azimuths, elevations = self.factor_values()
        return DataBundle(
            name="synth3d",
            splits={"train": split(is_train), "test": split(~is_train)},
            info={
                "protocol": f"classes 0..{c.n_train_classes - 1} train, "
                            f"{c.n_train_classes}..{c.n_train_classes + c.n_test_classes - 1} held out for test",
                "cache_key": self.key(),
                "azimuths_deg": azimuths.tolist(),
                "elevations_deg": elevations.tolist(),
            },
        )
