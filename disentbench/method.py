"""BaseMethod: what most method plugins subclass. A subclass supplies ``Config``, ``stages``,
``encode`` and ``decode``; training, transfer, saving and loading come from here."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from disentbench.contracts import Codes, DataInfo, Split
from disentbench.training import Stage, Trainer, TrainOptions, TrainResult
from disentbench.weights import torch_load_safely  # one clean line naming the file on failure


class BaseMethod(nn.Module):
    """A trainable method. All of its state (codes, schedules such as λ or γ) lives in parameters
    and buffers, so ``state_dict`` is the whole method and checkpoints resume exactly."""

    Config: ClassVar[type]

    def __init__(self, config: Any, info: DataInfo) -> None:
        super().__init__()
        self.config = config
        self.info = info

    # -- to implement -----------------------------------------------------------------------
    def stages(self, train: Split) -> list[Stage]:
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> Codes:
        raise NotImplementedError

    def decode(self, class_code: torch.Tensor, content_code: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- provided ---------------------------------------------------------------------------
    def fit(self, train: Split, options: TrainOptions, *, seed: int = 0, checkpoint: Path | None = None,
            progress: bool = True) -> TrainResult:
        return Trainer(self, train, options, seed=seed, checkpoint=checkpoint, progress=progress).run()

    @torch.no_grad()
    def transfer(self, class_images: torch.Tensor, content_images: torch.Tensor) -> torch.Tensor:
        """Class (identity/appearance) from ``class_images[k]``, content (pose) from ``content_images[k]``."""
        return self.decode(self.encode(class_images).class_code, self.encode(content_images).content_code)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        codes = self.encode(images)
        return self.decode(codes.class_code, codes.content_code)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def save(self, path: Path) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        state = torch_load_safely(Path(path), map_location=self.device, what="trained state",
                                  fix="delete it and run again to retrain")
        self.load_state_dict(state)
