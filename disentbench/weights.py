"""Pretrained weight files: registered by plugins, verified before use, loaded safely."""
from __future__ import annotations

import pickle
import re
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


class CheckpointError(pickle.UnpicklingError, RuntimeError):
    """A checkpoint or weight file that does not load safely (``weights_only=True``): truncated,
    empty, not a checkpoint, or holding pickled code. One line naming the file and what to do;
    an UnpicklingError and a RuntimeError, like what ``torch.load`` raises for such files."""


def _load_failure(path: Path, exc: BaseException) -> str:
    """Why ``path`` does not load, in a clause, from what ``torch.load`` raised (torch's own text
    suggests loading untrusted files with ``weights_only=False``; it is never repeated)."""
    text = str(exc)
    if isinstance(exc, EOFError) or (path.exists() and path.stat().st_size == 0):
        return "the file is empty or ends early (truncated)"
    if any(s in text for s in ("central directory", "PytorchStreamReader", "zip archive", "inline_container")):
        return "it is not a complete PyTorch checkpoint (truncated or corrupt)"
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds pickled code or objects ({found.group(1)}), which a safe load refuses: only "
                "tensors and plain containers are loaded")
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        try:
            head = path.read_bytes()[:16]
        except OSError:
            head = b""
        return f"it is not a PyTorch checkpoint of tensors (it starts with {head!r})"
    detail = f"{type(exc).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}".rstrip(": ")
    return f"it is corrupt ({detail})"


def torch_load_safely(path: Path, *, map_location: Any = "cpu", what: str = "checkpoint",
                      fix: str = "delete it and fetch it again", allow: list[Any] | None = None) -> Any:
    """``torch.load(path, weights_only=True)``; any failure to load becomes a one-line
    :class:`CheckpointError`: ``cannot load <what> <path>: <why>; <fix>``. ``allow``: extra safe
    globals (``torch.serialization.safe_globals``). A missing file raises FileNotFoundError."""
    import torch

    path = Path(path)
    try:
        if allow:
            with torch.serialization.safe_globals(allow):
                return torch.load(path, map_location=map_location, weights_only=True)
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001  (whatever the file's bytes make torch raise: one clean line)
        if _not_the_file(exc):  # out of device memory, no such device: never say to delete the file
            raise
        raise CheckpointError(f"cannot load {what} {path}: {_load_failure(path, exc)}; {fix}") from None


def _not_the_file(exc: BaseException) -> bool:
    """Whether what ``torch.load`` raised is about the device or memory rather than the file's bytes."""
    import torch

    if isinstance(exc, (getattr(torch, "OutOfMemoryError", MemoryError), PermissionError, IsADirectoryError)):
        return True
    text = str(exc).lower()
    return any(word in text for word in ("out of memory", "cuda", "device", "mps backend"))


def load_checkpoint(path: Path, *, fix: str = "delete it and fetch it again") -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers, never arbitrary pickled code.
    Checkpoints that also hold NumPy scalars (torchreid's model zoo stores its rank-1 accuracy as one)
    are allowed those NumPy types and nothing else. A file that does not load raises
    :class:`CheckpointError` naming it (never suggesting an unsafe load)."""
    import numpy as np

    try:
        return torch_load_safely(path, what="weights", fix=fix)
    except CheckpointError:  # retry once with the NumPy scalar types allowed
        core = np._core if hasattr(np, "_core") else np.core  # NumPy 2 renamed numpy.core
        allowed = [core.multiarray.scalar, np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)),
                   type(np.dtype(np.int64))]
        return torch_load_safely(path, what="weights", fix=fix, allow=allowed)


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
                load_checkpoint(path, fix="it was deleted")
            except Exception as exc:  # noqa: BLE001
                path.unlink(missing_ok=True)
                raise WeightsUnavailable(
                    f"the file fetched for {name!r} is not a PyTorch checkpoint that loads safely ({exc}). "
                    f"{self.registry.get(name).instructions}".strip()) from None
        return path

    def load_state_dict(self, name: str, *, download: bool = False) -> dict[str, Any]:
        """:func:`load_checkpoint` (``weights_only=True``) on the verified file."""
        return load_checkpoint(self.path(name, download=download),
                               fix=f"delete it and run `disentbench weights fetch {name}`")


def passed_store(store: WeightStore | None, name: str, who: str) -> WeightStore:
    """``store`` (passed in by the runner), or :class:`WeightsUnavailable` saying that none was."""
    if store is None:
        raise WeightsUnavailable(
            f"{who} needs the pretrained weights {name!r}, but no WeightStore was passed in (the runner passes "
            "DataInfo.weights to a method and EvalContext.weights to a metric); when building one by hand, "
            "pass weights=WeightStore(load_registries().weights)")
    return store
