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
        """"verified", "missing" or "corrupt: ..." (hashes the file if present)."""
        try:
            self.path(name, download=False)
            return "verified"
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
        return self.path(name, download=True, progress=progress)

    def load_state_dict(self, name: str, *, download: bool = False) -> dict[str, Any]:
        """``torch.load`` with ``weights_only=True`` on the verified file."""
        import torch

        return torch.load(self.path(name, download=download), map_location="cpu", weights_only=True)


def default_store() -> WeightStore:
    """A store over every weight file the installed plugins register."""
    from disentbench.plugins import load_registries

    return WeightStore(load_registries().weights)
