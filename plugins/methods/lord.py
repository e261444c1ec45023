"""LORD — Gabbay & Hoshen, "Demystifying Inter-Class Disentanglement", ICLR 2020.

Stage 1 (latent optimisation, eq. 6-7): a class embedding e_y shared by all images of a class, a
content embedding c_i per image, and an AdaIN generator G are optimised jointly:
    L = Σ_i ℓ(G(e_{y_i}, c_i + z_i), x_i) + λ‖c_i‖²,   z_i ~ N(0, σ²I)   (asymmetric noise, eq. 6)
Stage 2 (amortisation, eq. 8): encoders E_y, E_c are trained to output the stage-1 codes while G
is fine-tuned on reconstruction:
    L_E = Σ_i ℓ(G(E_y(x_i), E_c(x_i)), x_i) + α₁‖E_y(x_i) − e_{y_i}‖² + α₂‖E_c(x_i) − c_i‖²
Transfer (eq. 9): x' = G(E_y(x_1), E_c(x_2)).
Defaults are the paper's appendix A.1; α₁ = α₂ = 10 as in the authors' code.

The ablations of Table 3 (§5) are options; the defaults are the full method:
* ``variant="amortized"``: encoders E_y, E_c instead of latent codes from the start, the class codes
  of a class averaged within the batch (batches of ``amortized_group_size`` images per class);
  one stage. ``variant="semi-amortized"``: shared class embeddings optimised as in stage 1, content
  codes from an encoder E_c; stage 2 then trains E_y only (E_c already gives the content codes).
* ``regularization``: "noise" (eq. 6: asymmetric noise and activation decay), "kl" (a Gaussian
  content encoder regularised by KL(q(c|x) ‖ N(0, I)); amortized variants only) or "none"
  ("w/o regularization").
* ``second_stage=False`` ("w/o second stage"): no encoders; the codes of a new image are found by
  latent optimisation with G frozen (``inference_steps`` Adam steps at ``lr_inference``).
Where the paper is silent, the official lord-pytorch code's choices are the defaults (README: "LORD:
which setting reproduces which source"): output kernels, LeakyReLU slope, VGG inputs. The optimiser is
the paper's Adam at its constant rates; the official code's (beta1 0.5, each rate on a cosine down to
1e-5 over each stage) is ``lr_schedule="cosine", adam_beta1=0.5``.
Not in the paper, so chosen here: ``kl_weight``, ``amortized_group_size``, ``inference_steps``,
``lr_inference``, and that stage-1 encoders learn at ``lr_generator``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from disentbench.config import added, allowed, bounds
from disentbench.contracts import Codes, DataInfo, Split
from disentbench.method import BaseMethod
from disentbench.nn import AdaINGenerator, ConvEncoder, GaussianEncoder, kl_standard_normal, reconstruction_loss, reparameterize
from disentbench.training import ClassGroupSampler, RandomSampler, Stage, cosine_lr


@dataclass
class LORDConfig:
    class_dim: int = 256
    content_dim: int = 128
    content_std: float = 1.0  # σ of the additive content noise
    content_decay: float = 0.001  # λ, activation decay on content codes
    generator_channels: int = 256  # AdaIN generator width
    n_adain: int = 4
    generator_last_channels: int = 64  # the two final convolutions: 64 channels, 5×5 then 7×7 kernels
    generator_last_kernel: int = 7  # the output convolution
    # where the paper is silent, the official lord-pytorch code's choices (README: LORD as published)
    generator_penultimate_kernel: int = 5  # the 64-channel convolution before the output one
    leaky_slope: float = 0.01  # every LeakyReLU of generator and encoders (torch's default, as nn.LeakyReLU())
    vgg_imagenet_normalize: bool = False  # the perceptual loss feeds VGG16 [0, 1] images, not ImageNet-normalised
    # the optimiser: the paper's Adam (beta1 0.9) at constant learning rates; the official code's is Adam with
    # beta1 0.5 and each learning rate on a cosine down to lr_min over the stage's steps (CosineAnnealingLR,
    # eta_min 1e-5): lr_schedule="cosine", adam_beta1=0.5. Options added after runs were recorded: at their
    # defaults they stay out of the run's identity (config.added)
    lr_schedule: Literal["constant", "cosine"] = added("constant")
    lr_min: float = added(1e-5)
    adam_beta1: float = added(0.9, allowed(bounds(0, 1, high_open=True)))
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
    # Table 3 ablations (module docstring); the defaults are the full method
    variant: Literal["latent", "semi-amortized", "amortized"] = "latent"
    regularization: Literal["noise", "kl", "none"] = "noise"
    second_stage: bool = True
    kl_weight: float = 1.0  # regularization="kl": weight of the per-image KL (summed over dimensions)
    amortized_group_size: int = 8  # variant="amortized": images per class in a batch (class codes averaged)
    inference_steps: int = 100  # second_stage=False: latent-optimisation steps per new image
    lr_inference: float = 1e-2

    def __post_init__(self) -> None:
        if self.regularization == "kl" and self.variant == "latent":
            raise ValueError("regularization='kl' needs a content encoder: use variant='amortized' or "
                             "'semi-amortized' (latent codes use 'noise' or 'none')")
        if not self.second_stage and self.variant != "latent":
            raise ValueError(f"second_stage=false applies to variant='latent'; variant={self.variant!r} "
                             "already has encoders")
        if self.variant == "amortized" and self.amortized_group_size < 2:
            raise ValueError("amortized_group_size must be at least 2 (class codes are averaged within a class)")


class LORD(BaseMethod):
    Config = LORDConfig

    def __init__(self, config: LORDConfig, info: DataInfo) -> None:
        super().__init__(config, info)
        c = config
        if c.variant != "amortized":  # shared class embeddings e_y
            self.class_embedding = nn.Embedding(info.n_classes, c.class_dim)
            nn.init.uniform_(self.class_embedding.weight, -c.init_scale, c.init_scale)
        if c.variant == "latent":  # per-image content embeddings c_i
            self.content_embedding = nn.Embedding(info.n_images, c.content_dim)
            nn.init.uniform_(self.content_embedding.weight, -c.init_scale, c.init_scale)
        self.generator = AdaINGenerator(c.content_dim, c.class_dim, info.height, info.channels,
                                        c.generator_channels, c.n_adain, c.generator_last_channels,
                                        c.generator_last_kernel, c.generator_penultimate_kernel, c.leaky_slope)
        enc = dict(resolution=info.height, in_channels=info.channels, channels=c.encoder_channels,
                   hidden=c.encoder_hidden, slope=c.leaky_slope)
        if c.second_stage:
            self.class_encoder = ConvEncoder(c.class_dim, **enc)
            self.content_encoder = (GaussianEncoder if c.regularization == "kl" else ConvEncoder)(c.content_dim, **enc)
        self.recon = reconstruction_loss(c.recon_loss, self.info.weights, imagenet_normalize=c.vgg_imagenet_normalize)

    # G(e_y, c): the content code is the generator's spatial input, the class code drives AdaIN
    def decode(self, class_code: torch.Tensor, content_code: torch.Tensor) -> torch.Tensor:
        return self.generator(content_code, class_code)

    def encode(self, images: torch.Tensor) -> Codes:
        if not self.config.second_stage:
            return self._optimise_codes(images)
        return Codes(self.class_encoder(images), self._content(images)[0])

    def _content(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """E_c(x): the content code (the posterior mean for regularization="kl") and its log-variance."""
        out = self.content_encoder(images)
        return out if isinstance(out, tuple) else (out, None)

    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        sampler = ClassGroupSampler(c.amortized_group_size) if c.variant == "amortized" else RandomSampler()
        stages = [Stage("latent", c.epochs, c.batch_size, self._latent_step, self._latent_optimizers, sampler)]
        if c.second_stage and c.variant != "amortized":
            stages.append(Stage("encoders", c.encoder_epochs, c.encoder_batch_size, self._encoder_step,
                                self._encoder_optimizers, RandomSampler()))
        return stages

    # -- the codes of stage 1, by variant ---------------------------------------------------
    def _class_codes(self, batch) -> torch.Tensor:
        if self.config.variant != "amortized":
            return self.class_embedding(batch.labels)
        codes = self.class_encoder(batch.images)  # amortized: E_y(x) averaged over the class's images in the batch
        _, inverse = torch.unique(batch.labels, return_inverse=True)
        sums = torch.zeros(int(inverse.max()) + 1, codes.shape[1], device=codes.device, dtype=codes.dtype)
        sums = sums.index_add(0, inverse, codes)
        counts = torch.bincount(inverse, minlength=sums.shape[0]).to(codes.dtype)
        return (sums / counts[:, None])[inverse]

    def _regularised_content(self, batch, ctx) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """(the content code fed to G, its regularisation loss, what to log)."""
        c = self.config
        if c.variant == "latent":
            mean, logvar = self.content_embedding(batch.index), None
        else:
            mean, logvar = self._content(batch.images)
        if c.regularization == "kl":
            z = reparameterize(mean, logvar, ctx.randn(*mean.shape))
            kl = kl_standard_normal(mean, logvar).mean()
            return z, c.kl_weight * kl, {"kl": kl.detach(), "content_decay": mean.pow(2).sum(dim=1).mean().detach()}
        if c.regularization == "none":
            return mean, mean.new_zeros(()), {}
        noisy = mean + c.content_std * ctx.randn(*mean.shape)  # eq. 6: z ~ N(0, σ²I)
        decay = mean.pow(2).sum(dim=1).mean()  # λ‖c_i‖²
        return noisy, c.content_decay * decay, {"content_decay": decay.detach()}

    # -- without a second stage: codes of new images by latent optimisation ------------------
    def _optimise_codes(self, images: torch.Tensor) -> Codes:
        """Codes that make G (frozen) reconstruct ``images``: Adam on the class code (starting at the
        mean class embedding) and the content code (starting at 0) with the stage-1 objective."""
        c = self.config
        n = images.shape[0]
        with torch.enable_grad():
            class_code = self.class_embedding.weight.detach().mean(0).expand(n, -1).clone().requires_grad_(True)
            content = torch.zeros(n, c.content_dim, device=images.device, requires_grad=True)
            optimiser = torch.optim.Adam([class_code, content], lr=c.lr_inference)
            decay = c.content_decay if c.regularization == "noise" else 0.0
            for _ in range(c.inference_steps):
                loss = self.recon(self.decode(class_code, content), images) + decay * content.pow(2).sum(dim=1).mean()
                class_code.grad, content.grad = torch.autograd.grad(loss, [class_code, content])
                optimiser.step()
        return Codes(class_code.detach(), content.detach())

    # -- stage 1: latent optimisation ------------------------------------------------------
    def _latent_optimizers(self):
        c = self.config
        networks = list(self.generator.parameters())
        codes: list[nn.Parameter] = []
        if c.variant == "latent":
            codes = list(self.class_embedding.parameters()) + list(self.content_embedding.parameters())
        elif c.variant == "semi-amortized":
            codes = list(self.class_embedding.parameters())
            networks += list(self.content_encoder.parameters())
        else:
            networks += list(self.class_encoder.parameters()) + list(self.content_encoder.parameters())
        return {"latent": torch.optim.Adam([
            {"params": networks, "lr": c.lr_generator},
            {"params": codes, "lr": c.lr_latent},
        ], betas=(c.adam_beta1, 0.999))}

    def _anneal(self, ctx, name: str, base_lrs: list[float]) -> None:
        if self.config.lr_schedule == "cosine":
            cosine_lr(ctx.optimizers[name], base_lrs, ctx.progress, self.config.lr_min)

    def _latent_step(self, batch, ctx):
        class_code = self._class_codes(batch)
        content, regulariser, logged = self._regularised_content(batch, ctx)
        out = self.decode(class_code, content)
        rec = self.recon(out, batch.images)
        loss = rec + regulariser
        self._anneal(ctx, "latent", [self.config.lr_generator, self.config.lr_latent])
        ctx.update(loss, "latent")
        return {"loss": loss.detach(), "reconstruction": rec.detach(), **logged}

    # -- stage 2: amortised encoders -------------------------------------------------------
    def _encoder_optimizers(self):
        params = list(self.class_encoder.parameters()) + list(self.generator.parameters())
        if self.config.variant == "latent":  # semi-amortized: E_c already gives the content codes
            params += list(self.content_encoder.parameters())
        return {"encoders": torch.optim.Adam(params, lr=self.config.lr_encoder, betas=(self.config.adam_beta1, 0.999))}

    def _encoder_step(self, batch, ctx):
        c = self.config
        with torch.no_grad():
            class_target = self.class_embedding(batch.labels)
            content_target = self.content_embedding(batch.index) if c.variant == "latent" else None
        codes = self.encode(batch.images)
        rec = self.recon(self.decode(codes.class_code, codes.content_code), batch.images)
        class_err = (codes.class_code - class_target).pow(2).mean()
        content_err = ((codes.content_code - content_target).pow(2).mean() if content_target is not None
                       else class_err.new_zeros(()))
        loss = rec + c.code_weight * (class_err + content_err)  # eq. 8
        self._anneal(ctx, "encoders", [c.lr_encoder])
        ctx.update(loss, "encoders")
        return {"loss": loss.detach(), "reconstruction": rec.detach(), "class_code": class_err.detach(),
                "content_code": content_err.detach()}
