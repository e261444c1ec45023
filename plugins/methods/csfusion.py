"""C-S fusion — "Rethinking Content and Style: Exploring Bias for Unsupervised Disentanglement"
(anonymous ICLR 2021 submission; ``/work/shared/papers/004_fa0716d2c7c19860.txt``).

Unsupervised: every training image i gets a style code s_i (d_s) and a content code c_i (d_c),
optimised directly with the generator (latent optimisation, App. C.1). The inductive bias (§3.1-3.2):
content codes are forced to share one distribution Ψ by a normalisation — instance norm → N(0, I),
or L2 → uniform on the sphere — and the style code only scales and shifts it (eq. 3):
    z_i = f_σ(s_i) · norm(c_i) + f_μ(s_i)
"single" fusion feeds z_i to the generator; "multiple" fusion also repeats the block before every
generator layer (normalise the features, scale and shift them from s_i: AdaIN). Both codes first
pass the reparametric module R(μ) = μ + σε, σ = 1 (App. C.2). The objective (eq. 5):
    w_P · L_P(G(R(s_i), R(c_i)), I_i) + w_IB · L_IB + w_ID · L_ID
    L_IB = γ_s ‖s² − C_s‖₁ + γ_c ‖c² − C_c‖₁, capacities C rising linearly (eq. 8, App. C.4)
    L_ID = Σ_l λ_l (‖Φ_l(u) − Φ_l(x)‖₁ + ‖Φ_l(v) − Φ_l(y)‖₁) (eq. 7, App. C.3), for image pairs (i, j):
           u = G(R(s_i), R(c_j)), v = G(R(s_j), R(c_i)), x = G(R(s_i), R(c_i)), y = G(R(s_j), R(c_j))
Unseen images (§4.3, eq. 6): encoders regress the learned codes, L_E = ‖E_s(I_i) − s_i‖₁ + ‖E_c(I_i) − c_i‖₁.

Φ is "a pretrained ResNet-18" trained by Wu et al. (2018)'s instance discrimination (App. C.3).
No such weights can be fetched offline and the paper does not say what they were trained on, so
Φ is trained here, by that method, on the training images as the first stage: a non-parametric
softmax over a memory bank of L2-normalised 128-d features (τ = 0.07, bank momentum 0.5, full
softmax instead of NCE since the datasets are small), SGD lr 0.03. Class labels are never used.

Defaults are App. A's (d_s = 256, d_c = 128, 200 epochs, w_P = 5, w_IB = 1, w_ID = 1, Adam lr 3e-4
for the networks and 3e-3 for the codes) and App. C.4's Chairs bottleneck (C_c from 2 to 5 over
1.4·10⁵ steps, γ_c = 1, γ_s = 0); the generator and encoders are LORD's (the paper's Fig. 10 shows
the same layout), as are the batch sizes the paper leaves open. The quantitative results use the
multiple-fusion framework, hence the default. For the metrics, "class" = style and "content" =
the (normalised) content code.

Eq. 8 is read literally: c² is the element-wise square and ‖·‖₁ the L1 distance to C, averaged over
elements like the other loss terms. C is then the target power of every code dimension, i.e. its
signal-to-noise ratio against R's unit noise: content starts informative (C_c = 2) while style,
unconstrained (γ_s = 0) but starting near zero, is drowned in R's noise at first — so "the content
is forced to encode information first" (App. C.4). (Reading c² as the squared norm instead would cap
the content at about ½·5 nats against R's noise, less than the 62 views of Chairs need, ~4.1 nats.)

Deviations: trained on the training split only (the paper trains unsupervised methods on all
images, test classes included); Φ as above; hue jitter is left out of Φ's augmentations.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from disentbench.contracts import Codes, DataInfo, Split
from disentbench.method import BaseMethod
from disentbench.nn import AdaINGenerator, ConvEncoder, reconstruction_loss
from disentbench.nn.augment import instance_augment
from disentbench.nn.resnet import ResNet18
from disentbench.training import RandomSampler, Stage, TrainOptions, TrainResult


@dataclass
class CSFusionConfig:
    style_dim: int = 256  # d_s
    content_dim: int = 128  # d_c
    normalization: Literal["instance", "l2"] = "instance"  # Ψ = N(0, I) (IN) or uniform on the sphere (L2)
    fusion: Literal["single", "multiple"] = "multiple"
    noise_std: float = 1.0  # σ of the reparametric module R
    init_scale: float = 0.05  # codes start uniform in [-init_scale, init_scale] (as LORD)
    generator_channels: int = 256
    generator_blocks: int = 4
    generator_last_channels: int = 64
    generator_last_kernel: int = 7
    encoder_channels: int = 64
    encoder_hidden: int = 256
    recon_loss: Literal["perceptual", "l1", "mse"] = "perceptual"
    weight_recon: float = 5.0  # w_P
    weight_bottleneck: float = 1.0  # w_IB
    weight_instance: float = 1.0  # w_ID; 0 leaves out L_ID and the Φ stage
    # information bottleneck, eq. 8 (App. C.4: the Chairs values)
    content_capacity_start: float = 2.0
    content_capacity_max: float = 5.0
    content_capacity_steps: int = 140_000
    content_gamma: float = 1.0
    style_capacity_start: float = 0.0
    style_capacity_max: float = 0.0
    style_capacity_steps: int = 140_000
    style_gamma: float = 0.0
    # instance discrimination, eq. 7: Φ = ResNet-18 trained as in Wu et al. (2018)
    id_layer_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)  # λ_l for the stem and 4 stages
    id_width: int = 64
    id_feature_dim: int = 128
    id_temperature: float = 0.07
    id_memory_momentum: float = 0.5
    id_epochs: int = 200
    id_batch_size: int = 256
    id_lr: float = 0.03
    id_momentum: float = 0.9
    id_weight_decay: float = 5e-4
    id_crop_scale: float = 0.2  # smallest crop area
    id_jitter: float = 0.4
    id_grayscale: float = 0.2
    # latent optimisation
    epochs: int = 200
    batch_size: int = 128
    lr_model: float = 3e-4
    lr_latent: float = 3e-3
    # encoders for unseen images, eq. 6
    encoder_epochs: int = 200
    encoder_batch_size: int = 64
    lr_encoder: float = 3e-4

    def __post_init__(self) -> None:
        if self.weight_instance > 0 and len(self.id_layer_weights) != 5:
            raise ValueError(f"id_layer_weights needs 5 values (stem + 4 ResNet stages), got {self.id_layer_weights}")


def normalize_content(c: torch.Tensor, kind: str, eps: float = 1e-5) -> torch.Tensor:
    """Force each content code onto the shared distribution Ψ (§3.2): instance norm over its d_c
    entries (zero mean, unit variance ~ N(0, I)) or L2 normalisation (unit norm ~ uniform on the sphere)."""
    if kind == "instance":
        return (c - c.mean(dim=1, keepdim=True)) / (c.var(dim=1, keepdim=True, unbiased=False) + eps).sqrt()
    if kind == "l2":
        return c / c.norm(dim=1, keepdim=True).clamp_min(eps)
    raise ValueError(f"unknown content normalisation {kind!r}; use instance or l2")


def capacity(step: int, start: float, maximum: float, steps: int) -> float:
    """The information capacity at a training step: rises linearly from ``start`` to ``maximum``
    over ``steps`` steps, then stays (App. C.4)."""
    return start + (maximum - start) * min(1.0, step / max(1, steps))


def pair_swap(n: int, device: torch.device | None = None) -> torch.Tensor:
    """The permutation 0↔1, 2↔3, ...: pairs consecutive images of a (shuffled) batch; with an odd
    ``n`` the last image is its own partner."""
    index = torch.arange(n, device=device)
    swapped = index ^ 1
    return torch.where(swapped < n, swapped, index)


def instance_discrimination_loss(phi: ResNet18, mixed: torch.Tensor, own: torch.Tensor,
                                 layer_weights: tuple[float, ...]) -> torch.Tensor:
    """Σ_l λ_l ‖Φ_l(mixed) − Φ_l(own)‖₁ (eq. 7, mean over elements and batch): ``mixed[k]`` shares its
    style code with ``own[k]``, so an identity-aware Φ should see the same instance in both."""
    features = phi.features(torch.cat([mixed, own]))
    n = mixed.shape[0]
    loss = mixed.new_zeros(())
    for weight, f in zip(layer_weights, features):
        if weight:
            loss = loss + weight * (f[:n] - f[n:]).abs().mean()
    return loss


class CSFusion(BaseMethod):
    Config = CSFusionConfig

    def __init__(self, config: CSFusionConfig, info: DataInfo) -> None:
        super().__init__(config, info)
        c = config
        self.style_embedding = nn.Embedding(info.n_images, c.style_dim)
        self.content_embedding = nn.Embedding(info.n_images, c.content_dim)
        for emb in (self.style_embedding, self.content_embedding):
            nn.init.uniform_(emb.weight, -c.init_scale, c.init_scale)
        # the C-S fusion block before the generator, eq. 3: f_σ and f_μ are fully connected layers
        self.f_sigma = nn.Linear(c.style_dim, c.content_dim)
        self.f_mu = nn.Linear(c.style_dim, c.content_dim)
        nn.init.ones_(self.f_sigma.bias)  # starts as z ≈ norm(c): the content passes through
        style_in = c.style_dim if c.fusion == "multiple" else 0  # "multiple": the block before every layer (AdaIN)
        self.generator = AdaINGenerator(c.content_dim, style_in, info.height, info.channels, c.generator_channels,
                                        c.generator_blocks, c.generator_last_channels, c.generator_last_kernel)
        enc = dict(resolution=info.height, in_channels=info.channels, channels=c.encoder_channels,
                   hidden=c.encoder_hidden)
        self.style_encoder = ConvEncoder(c.style_dim, **enc)
        self.content_encoder = ConvEncoder(c.content_dim, **enc)
        if c.weight_instance > 0:
            self.phi = ResNet18(info.channels, c.id_width)
            self.phi_head = nn.Linear(self.phi.out_dim, c.id_feature_dim)
            bank = F.normalize(torch.randn(info.n_images, c.id_feature_dim), dim=1)
            self.register_buffer("memory_bank", bank)  # Wu et al.'s non-parametric class weights
        self.recon = reconstruction_loss(c.recon_loss, self.info.weights)

    # -- the generator with the C-S fusion block ---------------------------------------------
    def generate(self, style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        z = self.f_sigma(style) * normalize_content(content, self.config.normalization) + self.f_mu(style)  # eq. 3
        return self.generator(z, style if self.config.fusion == "multiple" else None)

    def decode(self, class_code: torch.Tensor, content_code: torch.Tensor) -> torch.Tensor:
        return self.generate(class_code, content_code)

    def encode(self, images: torch.Tensor) -> Codes:
        content = normalize_content(self.content_encoder(images), self.config.normalization)
        return Codes(self.style_encoder(images), content)

    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        stages = []
        if c.weight_instance > 0:
            stages.append(Stage("instance", c.id_epochs, c.id_batch_size, self._instance_step,
                                self._instance_optimizers, RandomSampler(), on_start=self._unfreeze_phi))
        stages.append(Stage("latent", c.epochs, c.batch_size, self._latent_step, self._latent_optimizers,
                            RandomSampler(), on_start=self._freeze_phi))
        stages.append(Stage("encoders", c.encoder_epochs, c.encoder_batch_size, self._encoder_step,
                            self._encoder_optimizers, RandomSampler()))
        return stages

    def fit(self, train: Split, options: TrainOptions, *, seed: int = 0, checkpoint: Path | None = None,
            progress: bool = True) -> TrainResult:
        result = super().fit(train, options, seed=seed, checkpoint=checkpoint, progress=progress)
        c = self.config
        latent = [row for row in result.log if row["stage"] == "latent"]
        result.info.update({
            "normalization": c.normalization, "fusion": c.fusion,
            "instance_discrimination": ("phi trained in-method (Wu et al. 2018) on the training split"
                                        if c.weight_instance > 0 else "off"),
            "final_content_capacity": latent[-1]["content_capacity"] if latent else None,
            "final_content_power": latent[-1]["content_power"] if latent else None,  # mean c² per dimension
            "final_style_power": latent[-1]["style_power"] if latent else None,
        })
        return result

    # -- stage 0: Φ by instance discrimination (Wu et al. 2018) ------------------------------
    def _unfreeze_phi(self) -> None:
        self.phi.requires_grad_(True)
        self.phi_head.requires_grad_(True)

    def _freeze_phi(self) -> None:
        if hasattr(self, "phi"):
            self.phi.requires_grad_(False)
            self.phi_head.requires_grad_(False)

    def _instance_optimizers(self):
        c = self.config
        params = list(self.phi.parameters()) + list(self.phi_head.parameters())
        return {"phi": torch.optim.SGD(params, lr=c.id_lr, momentum=c.id_momentum, weight_decay=c.id_weight_decay)}

    def _instance_step(self, batch, ctx):
        c = self.config
        self.phi.train()
        x = instance_augment(batch.images, ctx.rand, crop_scale=c.id_crop_scale, jitter=c.id_jitter,
                             grayscale=c.id_grayscale)
        v = F.normalize(self.phi_head(self.phi(x)), dim=1)
        logits = v @ self.memory_bank.t() / c.id_temperature  # non-parametric softmax over all instances
        loss = F.cross_entropy(logits, batch.index)
        ctx.update(loss, "phi")
        with torch.no_grad():  # v_i ← normalise(m v_i + (1 − m) f_i)
            m = c.id_memory_momentum
            updated = m * self.memory_bank[batch.index] + (1 - m) * v.detach().float()
            self.memory_bank[batch.index] = F.normalize(updated, dim=1)
        accuracy = (logits.argmax(dim=1) == batch.index).float().mean()
        return {"loss": loss.detach(), "instance_accuracy": accuracy.detach()}

    # -- stage 1: latent optimisation --------------------------------------------------------
    def _latent_optimizers(self):
        c = self.config
        model = (list(self.f_sigma.parameters()) + list(self.f_mu.parameters())
                 + list(self.generator.parameters()))
        codes = list(self.style_embedding.parameters()) + list(self.content_embedding.parameters())
        return {"latent": torch.optim.Adam([{"params": model, "lr": c.lr_model},
                                            {"params": codes, "lr": c.lr_latent}])}

    def _latent_step(self, batch, ctx):
        c = self.config
        style = self.style_embedding(batch.index)
        content = self.content_embedding(batch.index)
        style_r = style + c.noise_std * ctx.randn(*style.shape)  # R(s), App. C.2
        content_r = content + c.noise_std * ctx.randn(*content.shape)  # R(c)
        own = self.generate(style_r, content_r)
        rec = self.recon(own, batch.images)
        # eq. 8: capacities rise linearly with the step (ctx.step is restored on resume)
        cap_c = capacity(ctx.step, c.content_capacity_start, c.content_capacity_max, c.content_capacity_steps)
        cap_s = capacity(ctx.step, c.style_capacity_start, c.style_capacity_max, c.style_capacity_steps)
        c_sq, s_sq = content.pow(2), style.pow(2)
        bottleneck = c.content_gamma * (c_sq - cap_c).abs().mean() + c.style_gamma * (s_sq - cap_s).abs().mean()
        loss = c.weight_recon * rec + c.weight_bottleneck * bottleneck  # eq. 5
        out = {"reconstruction": rec.detach(), "bottleneck": bottleneck.detach(), "content_capacity": cap_c,
               "content_power": c_sq.mean().detach(), "style_power": s_sq.mean().detach()}
        if c.weight_instance > 0:
            self.phi.eval()  # frozen: batch-norm statistics from stage 0
            partner = pair_swap(len(batch.index), own.device)
            mixed = self.generate(style_r, content_r[partner])  # u (and v for the partner), eq. 7
            ident = instance_discrimination_loss(self.phi, mixed, own, c.id_layer_weights)
            loss = loss + c.weight_instance * ident
            out["instance"] = ident.detach()
        ctx.update(loss, "latent")
        return {"loss": loss.detach(), **out}

    # -- stage 2: encoders for unseen images, eq. 6 ------------------------------------------
    def _encoder_optimizers(self):
        params = list(self.style_encoder.parameters()) + list(self.content_encoder.parameters())
        return {"encoders": torch.optim.Adam(params, lr=self.config.lr_encoder)}

    def _encoder_step(self, batch, ctx):
        with torch.no_grad():
            style_target = self.style_embedding(batch.index)
            content_target = self.content_embedding(batch.index)
        style_err = (self.style_encoder(batch.images) - style_target).abs().sum(dim=1).mean()
        content_err = (self.content_encoder(batch.images) - content_target).abs().sum(dim=1).mean()
        loss = style_err + content_err
        ctx.update(loss, "encoders")
        return {"loss": loss.detach(), "style_code": style_err.detach(), "content_code": content_err.detach()}
