"""ML-VAE — Bouchacourt, Tomioka & Nowozin, "Multi-Level Variational Autoencoder: Learning
Disentangled Representations from Grouped Observations", AAAI 2018.

Both codes are Gaussian posteriors: per image, q(s_i|x_i) for the class ("content" in the paper,
shared by a group) and q(z_i|x_i) for the content ("style", per image). The class posterior of a
group G of images of one class is the product of the images' Gaussians (grouped inference, §3.2):
    q(s_G|X_G) ∝ Π_{i∈G} N(μ_i, σ_i²)  ⇒  1/σ_G² = Σ_i 1/σ_i²,   μ_G = σ_G² · Σ_i μ_i/σ_i²
One sample s_G ~ q(s_G|X_G) is shared by all images of the group. The per-group ELBO (§3.1):
    ELBO(G) = Σ_{i∈G} E[log p(x_i | s_G, z_i)] − Σ_{i∈G} KL(q(z_i|x_i)‖N(0,I)) − KL(q(s_G|X_G)‖N(0,I))
We minimise its negative per image, with the reconstruction loss ℓ as −log p per pixel value and
the KLs divided by D (the number of pixel values):
    L = mean_i ℓ(G(s_G(i), z_i), x_i) + w_KL·[mean_i KL(z_i) + Σ_G KL(s_G)/B] / D
Groups are the classes in the batch, so the sampler draws ``group_size`` images per class
(:class:`~disentbench.training.ClassGroupSampler`); at test time a single image is its own group.

Defaults: Adam lr 1e-3 (β 0.9, 0.999), batch 256, w_KL = 1 as in the public reference
implementation; groups of 8 (the batch then holds 32 classes: LORD §2 discusses this trade-off
between group size and batch diversity). Architecture and code sizes are the shared LORD ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from disentbench.contracts import Split
from disentbench.nn import kl_standard_normal, reparameterize
from disentbench.training import ClassGroupSampler, Stage
from disentbench_plugins.methods.autoencoder import TwoCodeConfig, TwoCodeMethod


@dataclass
class MLVAEConfig(TwoCodeConfig):
    batch_size: int = 256
    lr: float = 1e-3
    group_size: int = 8
    kl_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.group_size <= self.batch_size:
            raise ValueError(f"group_size {self.group_size} must be between 1 and batch_size {self.batch_size}")


def group_posterior(mu: torch.Tensor, logvar: torch.Tensor, groups: torch.Tensor,
                    n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Product of the Gaussians N(mu[i], exp(logvar[i])) over the images i of each group.

    ``groups[i]`` in 0..n_groups-1 names the group of image i. Returns the (n_groups, d) mean and
    log-variance: precisions add, the mean is the precision-weighted mean."""
    precision = torch.exp(-logvar)
    index = groups[:, None].expand_as(mu)
    total_precision = mu.new_zeros(n_groups, mu.shape[1]).scatter_add(0, index, precision)
    weighted = mu.new_zeros(n_groups, mu.shape[1]).scatter_add(0, index, mu * precision)
    return weighted / total_precision, -torch.log(total_precision)


class MLVAE(TwoCodeMethod):
    Config = MLVAEConfig
    class_variational = True
    content_variational = True

    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        return [Stage("mlvae", c.epochs, c.batch_size, self._step, self._optimizers,
                      ClassGroupSampler(c.group_size))]

    def _optimizers(self):
        return {"model": torch.optim.Adam(self.model_parameters(), lr=self.config.lr)}

    def _terms(self, x: torch.Tensor, labels: torch.Tensor, ctx) -> dict[str, torch.Tensor]:
        """The loss terms on ``x`` (whole groups of one class each), each a mean over its images."""
        c = self.config
        groups, group_of = torch.unique(labels, return_inverse=True)  # the classes in the batch
        class_mu, class_logvar = self.class_encoder(x)
        group_mu, group_logvar = group_posterior(class_mu, class_logvar, group_of, len(groups))
        class_code = reparameterize(group_mu, group_logvar, ctx.randn(*group_mu.shape))[group_of]
        content_mu, content_logvar = self.content_encoder(x)
        content_code = reparameterize(content_mu, content_logvar, ctx.randn(*content_mu.shape))
        rec = self.recon(self.decode(class_code, content_code), x)
        kl_content = kl_standard_normal(content_mu, content_logvar).mean() / self.pixels
        kl_class = kl_standard_normal(group_mu, group_logvar).sum() / len(x) / self.pixels  # one KL per group
        loss = rec + c.kl_weight * (kl_content + kl_class)
        return {"loss": loss, "reconstruction": rec, "kl_content": kl_content, "kl_class": kl_class}

    def _step(self, batch, ctx):
        # chunks of whole groups (a group's posterior is a product over its images): the image-weighted
        # mean of the chunks' terms is the batch's, so train.micro_batch changes no update
        return ctx.update_chunks(len(batch.images), lambda s: self._terms(batch.images[s], batch.labels[s], ctx),
                                 "model", group_size=batch.group_size)
