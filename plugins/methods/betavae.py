"""β-VAE — Higgins et al., "β-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework", ICLR 2017.

One latent z ~ q(z|x) = N(μ(x), σ²(x)), a decoder p(x|z), and the ELBO with the KL term weighted
by β > 1 (eq. 4):
    L = E_q[−log p(x|z)] + β · KL(q(z|x) ‖ N(0, I))
−log p(x|z) is the chosen reconstruction loss *summed* over pixels (a Gaussian or Laplace
likelihood up to constants for ``mse``/``l1``), so that β keeps the paper's unnormalised scale.

The method is unsupervised and has no class or content code. For the benchmark's metrics the latent
dimensions are split after training by a fixed rule (:mod:`disentbench.nn.latent_split`): the
``class_dims`` dimensions whose posterior means the class label explains best (η² on the training
split) form the class code, the rest the content code. The split is stored in a buffer and reported
in the run record (``method_info.latent_split``); labels are used for nothing else.

Defaults: Higgins et al.'s 3D Chairs setting (32 latents, β = 5, Adam lr 1e-4, batch 64). For a
fair comparison the encoder is LORD's (shared ConvEncoder with a Gaussian head) and the decoder is
LORD's generator with the latent as its only input (``AdaINGenerator(style_dim=0)``: the same FC
and convolution stack, no AdaIN since there is no second code), at LORD's widths; 200 epochs as LORD.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from disentbench.contracts import Codes, DataInfo, Split
from disentbench.method import BaseMethod
from disentbench.nn import AdaINGenerator, GaussianEncoder, kl_standard_normal, reconstruction_loss, reparameterize
from disentbench.nn.latent_split import LatentSplit, encode_split
from disentbench.training import RandomSampler, Stage, TrainOptions, TrainResult, resolve_device


@dataclass
class BetaVAEConfig:
    latent_dim: int = 32
    class_dims: int = 16  # latent dimensions assigned to the class code after training (top-k by η²)
    beta: float = 5.0
    encoder_channels: int = 64  # first conv width of the shared ConvEncoder (LORD's)
    encoder_hidden: int = 256
    generator_channels: int = 256  # LORD's generator, without AdaIN
    generator_blocks: int = 4  # upsampling blocks
    generator_last_channels: int = 64
    generator_last_kernel: int = 7
    recon_loss: Literal["perceptual", "l1", "mse"] = "mse"
    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    split_batch_size: int = 256  # images per forward pass when scoring dimensions after training


class SplitLatentVAE(BaseMethod):
    """A Gaussian VAE over one latent vector whose dimensions are split into class and content
    codes after training. Subclasses give the objective (:meth:`stages`)."""

    def __init__(self, config, info: DataInfo) -> None:
        super().__init__(config, info)
        c = config
        self.encoder = GaussianEncoder(c.latent_dim, resolution=info.height, in_channels=info.channels,
                                       channels=c.encoder_channels, hidden=c.encoder_hidden)
        self.decoder = AdaINGenerator(c.latent_dim, 0, info.height, info.channels, c.generator_channels,
                                      c.generator_blocks, c.generator_last_channels, c.generator_last_kernel)
        self.latent_split = LatentSplit(c.latent_dim, c.class_dims)
        self.recon = reconstruction_loss(c.recon_loss, self.info.weights)
        self.n_pixels = info.channels * info.height * info.width

    def reconstruction_nll(self, out: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) up to constants: the per-pixel mean loss times the number of pixels."""
        return self.recon(out, images) * self.n_pixels

    # the posterior mean is the representation; its dimensions are split into the two codes
    def encode(self, images: torch.Tensor) -> Codes:
        mu, _ = self.encoder(images)
        return Codes(*self.latent_split.split(mu))

    def decode(self, class_code: torch.Tensor, content_code: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.latent_split.merge(class_code, content_code))

    def fit(self, train: Split, options: TrainOptions, *, seed: int = 0, checkpoint: Path | None = None,
            progress: bool = True) -> TrainResult:
        """Train, then fix the class/content split of the latent dimensions on the training split."""
        result = super().fit(train, options, seed=seed, checkpoint=checkpoint, progress=progress)
        self.fit_split(train, resolve_device(options.device))
        result.info.update(self.latent_split.info())
        return result

    @torch.no_grad()
    def fit_split(self, train: Split, device: torch.device) -> None:
        was_training = self.training
        self.eval()
        mu = encode_split(lambda x: self.encoder(x)[0], train.images, device, self.config.split_batch_size)
        self.latent_split.fit(mu, torch.from_numpy(train.classes))
        self.train(was_training)


class BetaVAE(SplitLatentVAE):
    Config = BetaVAEConfig

    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        return [Stage("vae", c.epochs, c.batch_size, self._step, self._optimizers, RandomSampler())]

    def _optimizers(self):
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        return {"vae": torch.optim.Adam(params, lr=self.config.lr, betas=self.config.adam_betas)}

    def _step(self, batch, ctx):
        mu, logvar = self.encoder(batch.images)
        z = reparameterize(mu, logvar, ctx.randn(*mu.shape))
        rec = self.reconstruction_nll(self.decoder(z), batch.images)
        kl = kl_standard_normal(mu, logvar).mean()
        loss = rec + self.config.beta * kl  # eq. 4
        ctx.update(loss, "vae")
        return {"loss": loss.detach(), "reconstruction": rec.detach(), "kl": kl.detach()}
