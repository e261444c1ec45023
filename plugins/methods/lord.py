"""LORD — Gabbay & Hoshen, "Demystifying Inter-Class Disentanglement", ICLR 2020.

Stage 1 (latent optimisation, eq. 6-7): a class embedding e_y shared by all images of a class, a
content embedding c_i per image, and an AdaIN generator G are optimised jointly:
    L = Σ_i ℓ(G(e_{y_i}, c_i + z_i), x_i) + λ‖c_i‖²,   z_i ~ N(0, σ²I)   (asymmetric noise, eq. 6)
Stage 2 (amortisation, eq. 8): encoders E_y, E_c are trained to output the stage-1 codes while G
is fine-tuned on reconstruction:
    L_E = Σ_i ℓ(G(E_y(x_i), E_c(x_i)), x_i) + α₁‖E_y(x_i) − e_{y_i}‖² + α₂‖E_c(x_i) − c_i‖²
Transfer (eq. 9): x' = G(E_y(x_1), E_c(x_2)).
Defaults are the paper's appendix A.1; α₁ = α₂ = 10 as in the authors' code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from disentbench.contracts import Codes, DataInfo, Split
from disentbench.method import BaseMethod
from disentbench.nn import AdaINGenerator, ConvEncoder, reconstruction_loss
from disentbench.training import RandomSampler, Stage


@dataclass
class LORDConfig:
    class_dim: int = 256
    content_dim: int = 128
    content_std: float = 1.0  # σ of the additive content noise
    content_decay: float = 0.001  # λ, activation decay on content codes
    generator_channels: int = 256  # AdaIN generator width
    n_adain: int = 4
    generator_last_channels: int = 64  # the two final convolutions: 64 channels, 7×7 kernels
    generator_last_kernel: int = 7
    encoder_channels: int = 64  # first conv width of the stage-2 encoders
    encoder_hidden: int = 256
    recon_loss: Literal["perceptual", "l1", "mse"] = "perceptual"
    epochs: int = 200
    batch_size: int = 128
    lr_generator: float = 1e-4
    lr_latent: float = 1e-3
    encoder_epochs: int = 200
    encoder_batch_size: int = 64
    lr_encoder: float = 1e-4
    code_weight: float = 10.0  # α₁ = α₂ in eq. 8
    init_scale: float = 0.05  # embeddings start uniform in [-init_scale, init_scale]


class LORD(BaseMethod):
    Config = LORDConfig

    def __init__(self, config: LORDConfig, info: DataInfo) -> None:
        super().__init__(config, info)
        c = config
        self.class_embedding = nn.Embedding(info.n_classes, c.class_dim)
        self.content_embedding = nn.Embedding(info.n_images, c.content_dim)
        for emb in (self.class_embedding, self.content_embedding):
            nn.init.uniform_(emb.weight, -c.init_scale, c.init_scale)
        self.generator = AdaINGenerator(c.content_dim, c.class_dim, info.height, info.channels,
                                        c.generator_channels, c.n_adain, c.generator_last_channels,
                                        c.generator_last_kernel)
        enc = dict(resolution=info.height, in_channels=info.channels, channels=c.encoder_channels,
                   hidden=c.encoder_hidden)
        self.class_encoder = ConvEncoder(c.class_dim, **enc)
        self.content_encoder = ConvEncoder(c.content_dim, **enc)
        self.recon = reconstruction_loss(c.recon_loss)

    # G(e_y, c): the content code is the generator's spatial input, the class code drives AdaIN
    def decode(self, class_code: torch.Tensor, content_code: torch.Tensor) -> torch.Tensor:
        return self.generator(content_code, class_code)

    def encode(self, images: torch.Tensor) -> Codes:
        return Codes(self.class_encoder(images), self.content_encoder(images))

    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        return [
            Stage("latent", c.epochs, c.batch_size, self._latent_step, self._latent_optimizers, RandomSampler()),
            Stage("encoders", c.encoder_epochs, c.encoder_batch_size, self._encoder_step,
                  self._encoder_optimizers, RandomSampler()),
        ]

    # -- stage 1: latent optimisation ------------------------------------------------------
    def _latent_optimizers(self):
        c = self.config
        return {"latent": torch.optim.Adam([
            {"params": self.generator.parameters(), "lr": c.lr_generator},
            {"params": list(self.class_embedding.parameters()) + list(self.content_embedding.parameters()),
             "lr": c.lr_latent},
        ])}

    def _latent_step(self, batch, ctx):
        c = self.config
        class_code = self.class_embedding(batch.labels)
        content_code = self.content_embedding(batch.index)
        noisy = content_code + c.content_std * ctx.randn(*content_code.shape)  # eq. 6: z ~ N(0, σ²I)
        out = self.decode(class_code, noisy)
        rec = self.recon(out, batch.images)
        decay = content_code.pow(2).sum(dim=1).mean()  # λ‖c_i‖²
        loss = rec + c.content_decay * decay
        ctx.update(loss, "latent")
        return {"loss": loss.detach(), "reconstruction": rec.detach(), "content_decay": decay.detach()}

    # -- stage 2: amortised encoders -------------------------------------------------------
    def _encoder_optimizers(self):
        params = (list(self.class_encoder.parameters()) + list(self.content_encoder.parameters())
                  + list(self.generator.parameters()))
        return {"encoders": torch.optim.Adam(params, lr=self.config.lr_encoder)}

    def _encoder_step(self, batch, ctx):
        c = self.config
        with torch.no_grad():
            class_target = self.class_embedding(batch.labels)
            content_target = self.content_embedding(batch.index)
        codes = self.encode(batch.images)
        rec = self.recon(self.decode(codes.class_code, codes.content_code), batch.images)
        class_err = (codes.class_code - class_target).pow(2).mean()
        content_err = (codes.content_code - content_target).pow(2).mean()
        loss = rec + c.code_weight * (class_err + content_err)  # eq. 8
        ctx.update(loss, "encoders")
        return {"loss": loss.detach(), "reconstruction": rec.detach(), "class_code": class_err.detach(),
                "content_code": content_err.detach()}
