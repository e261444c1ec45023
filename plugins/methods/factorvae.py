"""FactorVAE — Kim & Mnih, "Disentangling by Factorising", ICML 2018.

A VAE whose ELBO is penalised by the total correlation of the aggregate posterior, estimated with a
discriminator D that tells samples of q(z) from samples of q̄(z) = Π_j q(z_j) (eq. 2 and Alg. 1):
    L_VAE = E_q[−log p(x|z)] + KL(q(z|x) ‖ N(0, I)) + γ · E_q(z)[log D(z) − log(1 − D(z))]
    L_D   = −½ E_{z∈B}[log D(z)] − ½ E_{z'∈B'}[log(1 − D(perm(z')))]
where perm(z') shuffles *each dimension independently* across the batch B', a second batch drawn
beside B, so the permuted codes follow the product of the marginals. D has its own optimiser.
Here every training step draws 2m images: the first m are B (VAE update), the last m are B'.

Unsupervised; the latent dimensions are split into class and content codes after training exactly
as for β-VAE (:mod:`disentbench.nn.latent_split`, recorded in ``method_info.latent_split``).

Defaults: Kim & Mnih's (10 latents, batch m = 64, VAE Adam lr 1e-4 (0.9, 0.999), discriminator
6-layer MLP with 1000 hidden units and two logits, Adam lr 1e-4 (0.5, 0.9)); γ = 6.4 as in the
reference implementation the C-S fusion paper used for its FactorVAE baseline. Encoder and decoder
are β-VAE's here (LORD's encoder with a Gaussian head, LORD's generator without AdaIN); 200 epochs
as LORD.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from disentbench.contracts import DataInfo, Split
from disentbench.nn import CodeDiscriminator, kl_standard_normal, reparameterize
from disentbench.training import RandomSampler, Stage
from disentbench_plugins.methods.betavae import SplitLatentVAE


@dataclass
class FactorVAEConfig:
    latent_dim: int = 10
    class_dims: int = 5  # latent dimensions assigned to the class code after training (top-k by η²)
    gamma: float = 6.4  # weight of the total-correlation penalty
    encoder_channels: int = 64
    encoder_hidden: int = 256
    generator_channels: int = 256
    generator_blocks: int = 4
    generator_last_channels: int = 64
    generator_last_kernel: int = 7
    discriminator_hidden: int = 1000
    discriminator_layers: int = 6
    recon_loss: Literal["perceptual", "l1", "mse"] = "mse"
    epochs: int = 200
    batch_size: int = 64  # m: each step draws 2m images, B for the VAE and B' for the discriminator
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    lr_discriminator: float = 1e-4
    discriminator_betas: tuple[float, float] = (0.5, 0.9)
    split_batch_size: int = 256


def permute_dims(z: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Shuffle every column of ``z`` (N, D) by its own permutation of the rows (Alg. 1 of Kim &
    Mnih). ``uniform`` is (N, D) uniform noise from the step's seeded generator; the argsort of each
    of its columns is that column's permutation."""
    order = uniform.argsort(dim=0)
    return z.gather(0, order)


class FactorVAE(SplitLatentVAE):
    Config = FactorVAEConfig

    def __init__(self, config: FactorVAEConfig, info: DataInfo) -> None:
        super().__init__(config, info)
        self.discriminator = CodeDiscriminator(config.latent_dim, hidden=config.discriminator_hidden,
                                               layers=config.discriminator_layers, out_dim=2)

    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        return [Stage("vae", c.epochs, 2 * c.batch_size, self._step, self._optimizers, RandomSampler())]

    def _optimizers(self):
        c = self.config
        vae = list(self.encoder.parameters()) + list(self.decoder.parameters())
        return {"vae": torch.optim.Adam(vae, lr=c.lr, betas=c.adam_betas),
                "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=c.lr_discriminator,
                                                  betas=c.discriminator_betas)}

    def _step(self, batch, ctx):
        c = self.config
        m = batch.images.shape[0] // 2
        if m == 0:
            raise ValueError("FactorVAE needs at least 2 images per step (batches B and B')")
        x, x_prime = batch.images[:m], batch.images[m : 2 * m]
        # VAE update on B: ELBO (β = 1) plus γ · TC, TC estimated by D's log-odds
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar, ctx.randn(*mu.shape))
        rec = self.reconstruction_nll(self.decoder(z), x)
        kl = kl_standard_normal(mu, logvar).mean()
        logits = self.discriminator(z)
        tc = (logits[:, 0] - logits[:, 1]).mean()  # log D(z) − log(1 − D(z)); class 0 = "from q(z)"
        loss = rec + kl + c.gamma * tc
        ctx.update(loss, "vae")
        # discriminator update: z from B (class 0) against dimension-permuted z' from B' (class 1)
        with torch.no_grad():
            mu_p, logvar_p = self.encoder(x_prime)
            z_prime = reparameterize(mu_p, logvar_p, ctx.randn(*mu_p.shape))
            z_perm = permute_dims(z_prime, ctx.rand(*z_prime.shape))
        d_true, d_perm = self.discriminator(z.detach()), self.discriminator(z_perm)
        zeros = torch.zeros(m, dtype=torch.long, device=x.device)
        d_loss = 0.5 * (F.cross_entropy(d_true, zeros) + F.cross_entropy(d_perm, zeros + 1))
        ctx.update(d_loss, "discriminator")
        return {"loss": loss.detach(), "reconstruction": rec.detach(), "kl": kl.detach(), "tc": tc.detach(),
                "discriminator": d_loss.detach()}
