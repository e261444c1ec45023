"""robust — Esser, Haux & Ommer, "Unsupervised Robust Disentangling of Latent Characteristics for
Image Synthesis", ICCV 2019 (§3–§4).

A pose encoder E_π(x2) (Gaussian, KL to a variational marginal r(π)), an appearance encoder
E_α(x1) applied to *another* image of the same appearance, and a decoder D(π, α) reconstruct x2
(eq. 3–4). Disentanglement is the constraint I(π, α) ≤ ε (eq. 5), enforced through two classifiers
of (π, α) pairs from the joint vs. the product of marginals (eq. 10–11):

* T, whose estimate I_T = E_joint T(π, α) (eq. 12) is pushed below ε by the augmented Lagrangian
  L_MI (eq. 22) with the multiplier update λ ← max(0, λ + µ(I_T − ε)) (eq. 23);
* T′, trained identically but never sending gradients to the encoder. The gap I_T′ − I_T reveals
  that the encoder overpowers T; it drives the weight γ of the KL term L_VB (eq. 21):
  γ ← max(0, γ + l_γ(I_T′ − I_T − b_γ)) (eq. 18).

L = L_rec + L_VB + L_MI (eq. 19). D and E_α get L_rec only; E_π gets the full loss (§3.5). Each
training step first updates T and T′ (eq. 10–11), then the generative model, then γ and λ.

The ablations of Table 1 / §4.1 are ``variant``: "variational" (no L_MI, γ from eq. 24),
"adversarial" (no L_VB), "equal" (b_γ = 0), "fixed" (γ = 1) and "adaptive" (the full model).

Not in the paper's text, so chosen here and recorded in the config: the architectures (the shared
LORD encoders and AdaIN generator, so comparisons are fair), µ, l_γ, b_γ, the initial γ and λ,
learning rates, epochs and batch size. ε = 0.125 is the paper's (Table 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from disentbench.contracts import Codes, DataInfo, Split
from disentbench.method import BaseMethod
from disentbench.nn import AdaINGenerator, CodeDiscriminator, ConvEncoder, GaussianEncoder, reconstruction_loss, reparameterize
from disentbench.training import ClassGroupSampler, Stage, TrainOptions, TrainResult

VARIANTS = ("adaptive", "variational", "adversarial", "equal", "fixed")


@dataclass
class RobustConfig:
    variant: Literal["adaptive", "variational", "adversarial", "equal", "fixed"] = "adaptive"  # Table 1 e/a/b/c/d
    pose_dim: int = 128  # π
    appearance_dim: int = 256  # α
    marginal: Literal["learned", "standard"] = "learned"  # r(π): a learned diagonal Gaussian, or N(0, I)
    epsilon: float = 0.125  # ε, the bound on I(π, α) (Table 1)
    mu: float = 1.0  # µ, penalty parameter of the augmented Lagrangian (eq. 22–23)
    lambda_init: float = 0.0  # λ_0
    gamma_init: float = 0.0  # γ_0
    gamma_lr: float = 1e-3  # l_γ (eq. 18, 24)
    gamma_bias: float = 0.05  # b_γ (eq. 18); "equal" sets it to 0
    fixed_gamma: float = 1.0  # γ of the "fixed" ablation (§4.2: γ = 1)
    classifier_hidden: int = 256  # T and T′: MLPs on the concatenated (π, α)
    classifier_layers: int = 3
    generator_channels: int = 256
    n_adain: int = 4
    generator_last_channels: int = 64
    generator_last_kernel: int = 7
    encoder_channels: int = 64
    encoder_hidden: int = 256
    recon_loss: Literal["perceptual", "l1", "mse"] = "perceptual"  # −log p(x2 | π, α) (eq. 20)
    epochs: int = 200
    batch_size: int = 64  # images: batch_size // 2 pairs (x1, x2) of the same appearance
    lr: float = 1e-4  # encoders, decoder and r(π)
    lr_classifier: float = 1e-4  # T and T′


def augmented_lagrangian(i_t: torch.Tensor, epsilon: float, lam: torch.Tensor | float, mu: float) -> torch.Tensor:
    """L_MI (eq. 22): λ(I_T − ε) + µ/2 (I_T − ε)² where I_T − ε ≥ −λ/µ, else −λ²/(2µ)."""
    lam = torch.as_tensor(lam, dtype=i_t.dtype, device=i_t.device)
    gap = i_t - epsilon
    active = lam * gap + 0.5 * mu * gap.pow(2)
    return torch.where(gap >= -lam / mu, active, -lam.pow(2) / (2 * mu))


def lambda_update(lam: float, i_t: float, epsilon: float, mu: float) -> float:
    """eq. 23: λ ← max(0, λ + µ(I_T − ε))."""
    return max(0.0, lam + mu * (i_t - epsilon))


def gamma_update(gamma: float, i_t: float, i_t_prime: float, lr: float, bias: float) -> float:
    """eq. 18: γ ← max(0, γ + l_γ(I_T′ − I_T − b_γ)) — up while T′ sees more entanglement than T."""
    return max(0.0, gamma + lr * (i_t_prime - i_t - bias))


def gamma_update_variational(gamma: float, i_t_prime: float, lr: float, epsilon: float) -> float:
    """eq. 24 (the "variational" ablation, no L_MI): γ ← max(0, γ + l_γ(I_T′ − ε))."""
    return max(0.0, gamma + lr * (i_t_prime - epsilon))


class Robust(BaseMethod):
    """Appearance α = the class code, pose π (its mean) = the content code."""

    Config = RobustConfig

    def __init__(self, config: RobustConfig, info: DataInfo) -> None:
        super().__init__(config, info)
        c = config
        if c.variant not in VARIANTS:
            raise ValueError(f"robust: variant {c.variant!r} is not one of {VARIANTS}")
        if c.mu <= 0:
            raise ValueError(f"robust: mu must be > 0 (penalty parameter of eq. 22), got {c.mu}")
        enc = dict(resolution=info.height, in_channels=info.channels, channels=c.encoder_channels,
                   hidden=c.encoder_hidden)
        self.pose_encoder = GaussianEncoder(c.pose_dim, **enc)  # E_π
        self.appearance_encoder = ConvEncoder(c.appearance_dim, **enc)  # E_α
        self.decoder = AdaINGenerator(c.pose_dim, c.appearance_dim, info.height, info.channels,  # D(π, α)
                                      c.generator_channels, c.n_adain, c.generator_last_channels,
                                      c.generator_last_kernel)
        self.r_mean = nn.Parameter(torch.zeros(c.pose_dim), requires_grad=c.marginal == "learned")
        self.r_logvar = nn.Parameter(torch.zeros(c.pose_dim), requires_grad=c.marginal == "learned")
        self.T = CodeDiscriminator(c.pose_dim + c.appearance_dim, c.classifier_hidden, c.classifier_layers)
        self.T_prime = CodeDiscriminator(c.pose_dim + c.appearance_dim, c.classifier_hidden, c.classifier_layers)
        self.recon = reconstruction_loss(c.recon_loss, self.info.weights)
        # adaptive multipliers and the latest estimates: buffers, so checkpoints resume exactly
        gamma0 = {"fixed": c.fixed_gamma, "adversarial": 0.0}.get(c.variant, c.gamma_init)
        self.register_buffer("gamma", torch.tensor(float(gamma0)))
        self.register_buffer("lam", torch.tensor(float(c.lambda_init)))
        self.register_buffer("i_t", torch.tensor(0.0))
        self.register_buffer("i_t_prime", torch.tensor(0.0))

    # -- the model ---------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> Codes:
        mu, _ = self.pose_encoder(images)
        return Codes(self.appearance_encoder(images), mu)

    def decode(self, class_code: torch.Tensor, content_code: torch.Tensor) -> torch.Tensor:
        return self.decoder(content_code, class_code)

    def kl_to_marginal(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(p(π|x2) ‖ r(π)) per sample, both diagonal Gaussians (the bound of eq. 9)."""
        m, lv = self.r_mean, self.r_logvar
        return 0.5 * (lv - logvar + (logvar.exp() + (mu - m).pow(2)) / lv.exp() - 1.0).sum(dim=1)

    @staticmethod
    def classifier_loss(t: nn.Module, pi: torch.Tensor, alpha: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """−(eq. 10 + eq. 11): pairs from the joint are labelled 1, pairs from the product of
        marginals (α shuffled across the batch) 0."""
        joint = t(torch.cat([pi, alpha], 1))
        marginal = t(torch.cat([pi, alpha[perm]], 1))
        return (F.binary_cross_entropy_with_logits(joint, torch.ones_like(joint))
                + F.binary_cross_entropy_with_logits(marginal, torch.zeros_like(marginal)))

    @staticmethod
    def estimate(t: nn.Module, pi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """I_T = E_{(π, α) ~ p(π, α)} T(π, α) (eq. 12)."""
        return t(torch.cat([pi, alpha], 1)).mean()

    # -- training ----------------------------------------------------------------------------
    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        return [Stage("train", c.epochs, c.batch_size, self._step, self._optimizers, ClassGroupSampler(2))]

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        model = (list(self.pose_encoder.parameters()) + list(self.appearance_encoder.parameters())
                 + list(self.decoder.parameters()) + [p for p in (self.r_mean, self.r_logvar) if p.requires_grad])
        return {
            "classifiers": torch.optim.Adam(list(self.T.parameters()) + list(self.T_prime.parameters()),
                                            lr=c.lr_classifier),
            "model": torch.optim.Adam(model, lr=c.lr),
        }

    def _step(self, batch, ctx) -> dict[str, torch.Tensor]:
        c = self.config
        x = batch.images
        n = x.shape[0] - x.shape[0] % 2
        x = x[:n]
        # consecutive images share appearance; each image x2 takes α from its partner x1
        partner = torch.arange(n, device=x.device).view(-1, 2).flip(1).reshape(-1)
        mu, logvar = self.pose_encoder(x)
        pi = reparameterize(mu, logvar, ctx.randn(*mu.shape))
        alpha = self.appearance_encoder(x)[partner]
        pi_d, alpha_d = pi.detach(), alpha.detach()

        # 1. classifiers T and T′ (eq. 10–11) on detached codes: no gradient reaches the encoders
        perm = ctx.randperm(n)
        cls_t = self.classifier_loss(self.T, pi_d, alpha_d, perm)
        cls_tp = self.classifier_loss(self.T_prime, pi_d, alpha_d, perm)
        ctx.update(cls_t + cls_tp, "classifiers")

        # 2. the generative model (eq. 19): L_rec for D and E_α, the full loss for E_π
        rec = self.recon(self.decode(alpha, pi), x)  # eq. 20
        kl = self.kl_to_marginal(mu, logvar).mean()
        i_t = self.estimate(self.T, pi, alpha_d)  # gradients to E_π only
        with torch.no_grad():
            i_t_prime = self.estimate(self.T_prime, pi_d, alpha_d)  # T′ never informs the encoder
        l_vb = self.gamma * kl  # eq. 21
        l_mi = augmented_lagrangian(i_t, c.epsilon, self.lam, c.mu)  # eq. 22
        loss = rec
        if c.variant != "adversarial":
            loss = loss + l_vb
        if c.variant != "variational":
            loss = loss + l_mi
        ctx.update(loss, "model")

        # 3. multipliers (eq. 18 / 24 and eq. 23)
        gamma, lam = self.update_multipliers(float(i_t.detach()), float(i_t_prime))
        return {"loss": loss.detach(), "reconstruction": rec.detach(), "kl": kl.detach(),
                "l_mi": l_mi.detach(), "classifier_t": cls_t.detach(), "classifier_t_prime": cls_tp.detach(),
                "i_t": i_t.detach(), "i_t_prime": i_t_prime, "gamma": gamma, "lambda": lam}

    @torch.no_grad()
    def update_multipliers(self, i_t: float, i_t_prime: float) -> tuple[float, float]:
        """γ and λ after one step with estimates I_T and I_T′, by the variant's rules."""
        c = self.config
        gamma, lam = float(self.gamma), float(self.lam)
        if c.variant == "adaptive":
            gamma = gamma_update(gamma, i_t, i_t_prime, c.gamma_lr, c.gamma_bias)
        elif c.variant == "equal":
            gamma = gamma_update(gamma, i_t, i_t_prime, c.gamma_lr, 0.0)
        elif c.variant == "variational":
            gamma = gamma_update_variational(gamma, i_t_prime, c.gamma_lr, c.epsilon)
        elif c.variant == "fixed":
            gamma = c.fixed_gamma
        else:  # adversarial: no L_VB
            gamma = 0.0
        if c.variant != "variational":  # the variational ablation has no L_MI, hence no λ
            lam = lambda_update(lam, i_t, c.epsilon, c.mu)
        self.gamma.fill_(gamma)
        self.lam.fill_(lam)
        self.i_t.fill_(i_t)
        self.i_t_prime.fill_(i_t_prime)
        return float(self.gamma), float(self.lam)  # the stored (checkpointed) values

    def fit(self, train: Split, options: TrainOptions, **kwargs) -> TrainResult:
        """Trains, then reports the ablation and the final I_T, I_T′, γ and λ (→ ``method_info``)."""
        result = super().fit(train, options, **kwargs)
        result.info.update({"variant": self.config.variant, "epsilon": self.config.epsilon,
                            "i_t": float(self.i_t), "i_t_prime": float(self.i_t_prime),
                            "gamma": float(self.gamma), "lambda": float(self.lam)})
        return result
