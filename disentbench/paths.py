"""Where data, caches and weights live: flags first, then environment variables, then defaults."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$DISENTBENCH_CACHE`` or ``~/.cache/disentbench`` (preprocessed arrays, evaluators)."""
    env = os.environ.get("DISENTBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "disentbench"


def data_root(override: str | Path | None = None) -> Path:
    """``--data-dir``, else ``$DISENTBENCH_DATA``, else ``<cache root>/data`` (raw downloads)."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("DISENTBENCH_DATA")
    return Path(env).expanduser() if env else cache_root() / "data"


def weights_root() -> Path:
    """``$DISENTBENCH_WEIGHTS``, else torchvision's ``$TORCH_HOME/hub/checkpoints`` so that files
    a user already has from torchvision are found, else ``~/.cache/torch/hub/checkpoints``."""
    env = os.environ.get("DISENTBENCH_WEIGHTS")
    if env:
        return Path(env).expanduser()
    torch_home = os.environ.get("TORCH_HOME")
    base = Path(torch_home).expanduser() if torch_home else Path.home() / ".cache" / "torch"
    return base / "hub" / "checkpoints"
