"""Plain two-code autoencoder: the lower bound every disentanglement method must beat.

A class encoder E_y and a content encoder E_c read the same image and LORD's AdaIN generator G
reconstructs it:  L = ℓ(G(E_y(x), E_c(x)), x).  Nothing stops either code from holding
everything, so both leak; the baselines in this package (DrNet, Cycle-VAE, ML-VAE) are this exact
network plus their own disentanglement objective, which keeps the comparison fair.

:class:`TwoCodeMethod` holds what they share: LORD's encoders (5 convolutions + 3 FC layers,
appendix A.1 of Gabbay & Hoshen 2020), its generator (content code as the spatial input, class
code driving AdaIN) and its code sizes (class 256, content 128), with a selectable reconstruction
loss ("for fairness, we evaluate each baseline with L1 and perceptual loss", LORD §4).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from disentbench.contracts import Codes, DataInfo, Split
from disentbench.method import BaseMethod
from disentbench.nn import AdaINGenerator, ConvEncoder, GaussianEncoder, reconstruction_loss
from disentbench.training import RandomSampler, Stage, TrainOptions, TrainResult


@dataclass
class TwoCodeConfig:
    """Architecture and optimisation shared by the amortised baselines: LORD's sizes by default,
    since the baselines' papers fix none for these datasets (their MNIST/KTH code sizes aside)."""

    class_dim: int = 256
    content_dim: int = 128
    generator_channels: int = 256
    n_adain: int = 4
    generator_last_channels: int = 64
    generator_last_kernel: int = 7
    encoder_channels: int = 64
    encoder_hidden: int = 256
    recon_loss: Literal["perceptual", "l1", "mse"] = "perceptual"
    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-4


class TwoCodeMethod(BaseMethod):
    """A class encoder, a content encoder and LORD's AdaIN generator G(class, content).

    Subclasses say which codes are Gaussian posteriors (``class_variational`` /
    ``content_variational``); ``encode`` then returns their means, as the VAE papers do at test time."""

    Config: ClassVar[type] = TwoCodeConfig
    class_variational: ClassVar[bool] = False
    content_variational: ClassVar[bool] = False

    def __init__(self, config: TwoCodeConfig, info: DataInfo) -> None:
        super().__init__(config, info)
        c = config
        enc = dict(resolution=info.height, in_channels=info.channels, channels=c.encoder_channels,
                   hidden=c.encoder_hidden)
        self.class_encoder = (GaussianEncoder if self.class_variational else ConvEncoder)(c.class_dim, **enc)
        self.content_encoder = (GaussianEncoder if self.content_variational else ConvEncoder)(c.content_dim, **enc)
        self.generator = AdaINGenerator(c.content_dim, c.class_dim, info.height, info.channels,
                                        c.generator_channels, c.n_adain, c.generator_last_channels,
                                        c.generator_last_kernel)
        self.recon = reconstruction_loss(c.recon_loss, self.info.weights)
        self.pixels = info.channels * info.height * info.width  # D, for per-pixel-value ELBO scaling

    def decode(self, class_code: torch.Tensor, content_code: torch.Tensor) -> torch.Tensor:
        return self.generator(content_code, class_code)

    def encode(self, images: torch.Tensor) -> Codes:
        class_code = self.class_encoder(images)
        content_code = self.content_encoder(images)
        if self.class_variational:
            class_code = class_code[0]
        if self.content_variational:
            content_code = content_code[0]
        return Codes(class_code, content_code)

    def fit(self, train: Split, options: TrainOptions, *, seed: int = 0, checkpoint: Path | None = None,
            progress: bool = True) -> TrainResult:
        """Train, then record in ``method_info`` each logged term averaged over the last epoch (e.g.
        DrNet's discriminator accuracy, Cycle-VAE's reverse-cycle loss): how the objective ended."""
        result = super().fit(train, options, seed=seed, checkpoint=checkpoint, progress=progress)
        if result.log:
            last = [row for row in result.log if row["epoch"] == result.log[-1]["epoch"]]
            keys = [k for k in last[-1] if k not in ("stage", "epoch", "step")]
            result.info["last_epoch_mean"] = {k: float(np.mean([row[k] for row in last if k in row])) for k in keys}
        return result

    def model_parameters(self) -> list[torch.nn.Parameter]:
        """Encoders and generator (not a method's discriminators)."""
        return (list(self.class_encoder.parameters()) + list(self.content_encoder.parameters())
                + list(self.generator.parameters()))


@dataclass
class AutoencoderConfig(TwoCodeConfig):
    pass


class Autoencoder(TwoCodeMethod):
    """Reconstruction only, from a random batch: L = ℓ(G(E_y(x), E_c(x)), x)."""

    Config = AutoencoderConfig

    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        return [Stage("autoencoder", c.epochs, c.batch_size, self._step, self._optimizers, RandomSampler())]

    def _optimizers(self):
        return {"model": torch.optim.Adam(self.model_parameters(), lr=self.config.lr)}

    def _step(self, batch, ctx):
        codes = self.encode(batch.images)
        loss = self.recon(self.decode(codes.class_code, codes.content_code), batch.images)
        ctx.update(loss, "model")
        return {"loss": loss.detach(), "reconstruction": loss.detach()}
