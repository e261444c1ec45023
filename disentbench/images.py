"""Image helpers for dataset plugins: centre crop, pad to square, and resize uint8 images by area
averaging (numpy only)."""
from __future__ import annotations

import numpy as np


def center_crop(image: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """The central ``height`` × ``width`` window of an (H, W[, C]) image (clipped to its size)."""
    width = height if width is None else width
    h, w = image.shape[:2]
    height, width = min(height, h), min(width, w)
    top, left = (h - height) // 2, (w - width) // 2
    return image[top : top + height, left : left + width]


def pad_to_square(image: np.ndarray, value: int = 0) -> np.ndarray:
    """Pad the shorter side of an (H, W[, C]) image evenly with ``value`` to make it square."""
    h, w = image.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    pad = [(top, side - h - top), (left, side - w - left)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="constant", constant_values=value)


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix whose row i holds the fraction of output pixel i that each input pixel
    covers: output pixel i spans input coordinates [i·s, (i+1)·s) with s = n_in / n_out."""
    scale = n_in / n_out
    edges = np.arange(n_out + 1) * scale
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return (overlap / scale).astype(np.float32)


def resize_images(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize uint8 images (N, H, W, C) to ``size`` (an int for square, or (height, width)) by
    area averaging: each output pixel is the mean of the source area it covers, weighted by
    overlap (an exact block mean when the factor is an integer). The same rule enlarges, which
    only small sources such as 60 px sprites need. Rounds half up."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    n, h, w, c = images.shape
    if (h, w) == (out_h, out_w):
        return np.ascontiguousarray(images, dtype=np.uint8)
    if h % out_h == 0 and w % out_w == 0:  # exact block means, summed slice by slice (fast)
        fh, fw = h // out_h, w // out_w
        blocks = images.reshape(n, out_h, fh, out_w, fw, c)
        rows = np.zeros((n, out_h, out_w, fw, c), dtype=np.uint32)
        for i in range(fh):
            rows += blocks[:, :, i]
        total = np.zeros((n, out_h, out_w, c), dtype=np.uint32)
        for j in range(fw):
            total += rows[:, :, :, j]
        area = fh * fw
        return ((total + area // 2) // area).astype(np.uint8)
    # Separable weights, applied as two large matrix products (batched small ones are slow).
    wh, ww = area_weights(h, out_h), area_weights(w, out_w)
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)  # (N, C, H, W)
    x = x.reshape(n * c * h, w) @ ww.T  # columns: (N·C·H, out_w)
    x = np.ascontiguousarray(x.reshape(n * c, h, out_w).transpose(1, 0, 2)).reshape(h, n * c * out_w)
    x = (wh @ x).reshape(out_h, n, c, out_w)  # rows
    return np.ascontiguousarray(np.clip(x.transpose(1, 0, 3, 2) + 0.5, 0, 255.99).astype(np.uint8))
