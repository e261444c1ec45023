"""Pretrained weight files: registered by plugins, verified before use, loaded safely."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from disentbench.contracts import Unavailable
from disentbench.download import ChecksumError, Resource
from disentbench.paths import weights_root
from disentbench.registry import Registry
from disentbench.specs import WeightSpec


class WeightsUnavailable(Unavailable):
    """A registered weight file is missing and cannot be downloaded here."""


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pth.tar", ".ckpt")


def load_checkpoint(path: Path) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers, never arbitrary pickled code.
    Checkpoints that also hold NumPy scalars (torchreid's model zoo stores its rank-1 accuracy as one)
    are allowed those NumPy types and nothing else."""
    import numpy as np
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  (retry once with the NumPy scalar types allowed)
        core = np._core if hasattr(np, "_core") else np.core  # NumPy 2 renamed numpy.core
        allowed = [core.multiarray.scalar, np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)),
                   type(np.dtype(np.int64))]
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)


def resource(spec: WeightSpec) -> Resource:
    manual = spec.instructions or f"or run `disentbench weights fetch {spec.name}` on a machine with internet"
    return Resource(spec.filename, url=spec.url, sha256=spec.sha256 or None, size=spec.size, manual=manual)


class WeightStore:
    """Finds, fetches and verifies the files of a weights registry under one root directory."""

    def __init__(self, registry: Registry[WeightSpec], root: Path | None = None) -> None:
        self.registry = registry
        self.root = Path(root) if root is not None else weights_root()

    def path_of(self, name: str) -> Path:
        return self.root / self.registry.get(name).filename

    def status(self, name: str) -> str:
        """"verified", "present (no checksum published)", "missing" or "corrupt: ..." (hashes the
        file if present)."""
        try:
            self.path(name, download=False)
            return "verified" if self.registry.get(name).sha256 else "present (no checksum published)"
        except WeightsUnavailable:
            return "missing"
        except ChecksumError as exc:
            return f"corrupt: {exc}"

    def path(self, name: str, *, download: bool = False, progress: bool = True) -> Path:
        """The verified local file for weight ``name``; downloads only when ``download`` is true."""
        spec = self.registry.get(name)
        try:
            return resource(spec).ensure(self.root, progress=progress, allow_download=download)
        except Unavailable as exc:
            raise WeightsUnavailable(f"pretrained weights {name!r} ({spec.description}): {exc}") from None

    def fetch(self, name: str, *, progress: bool = True) -> Path:
        """Download (if missing) and verify; a checkpoint with no published checksum must at least load
        safely, so that a web page served in its place (file hosts do that) is not kept."""
        path = self.path(name, download=True, progress=progress)
        if not self.registry.get(name).sha256 and path.name.endswith(CHECKPOINT_SUFFIXES):
            try:
                load_checkpoint(path)
            except Exception as exc:  # noqa: BLE001
                path.unlink(missing_ok=True)
                raise WeightsUnavailable(
                    f"the file fetched for {name!r} is not a PyTorch checkpoint that loads safely ({exc}); it was "
                    f"deleted. {self.registry.get(name).instructions}".strip()) from None
        return path

    def load_state_dict(self, name: str, *, download: bool = False) -> dict[str, Any]:
        """:func:`load_checkpoint` (``weights_only=True``) on the verified file."""
        return load_checkpoint(self.path(name, download=download))


def default_store() -> WeightStore:
    """A store over every weight file the installed plugins register."""
    from disentbench.plugins import load_registries

    return WeightStore(load_registries().weights)
