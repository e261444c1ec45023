"""Cycle-VAE — Harsh Jha, Anand, Singh & Veeravasarapu, "Disentangling Factors of Variation with
Cycle-Consistent Variational Auto-Encoders", ECCV 2018.

The specified factor (our class) has a deterministic code s = E_y(x); the unspecified factor (our
content) a Gaussian posterior q(z|x) = E_c(x). Each step has two phases (§3 of the paper):

Forward cycle, on pairs x_a, x_b of one class: a VAE whose decoder gets the *swapped* class code,
    L_fwd = w_rec·[ℓ(G(s_b, z_a), x_a) + ℓ(G(s_a, z_b), x_b)] + w_KL·[KL(q(z|x_a)‖N(0,I)) + KL(·|x_b)]/D
(z ~ q(z|x) by reparameterisation; KL in nats divided by D, the number of pixel values, as in the
authors' code, so it is on the scale of the per-pixel reconstruction loss).

Reverse cycle, with z ~ N(0, I) and images x_1, x_2 of different classes: decode z with each class
code, re-encode, and require the same content code back from both:
    L_rev = w_rev·‖μ_z(G(sg s_1, z)) − μ_z(G(sg s_2, z))‖₁
This is the step that pushes class information out of the content encoder; as in the authors' code
it updates the encoders only (class codes detached), with its own optimizer.

Defaults from the authors' code: Adam lr 1e-4 (β 0.9, 0.999), batch 64, 100 epochs with the
learning rate divided by 10 after 80% of them, w_rec = 2, w_KL = 3, w_rev = 10. Architecture and
code sizes are the shared LORD ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from disentbench.config import allowed, bounds
from disentbench.nn import kl_standard_normal, reparameterize
from disentbench.training import ClassGroupSampler, Stage
from disentbench.contracts import Split
from disentbench_plugins.methods.autoencoder import TwoCodeConfig, TwoCodeMethod
from disentbench_plugins.methods.drnet import partner


@dataclass
class CycleVAEConfig(TwoCodeConfig):
    batch_size: int = 64
    epochs: int = 100
    lr: float = 1e-4
    # fraction of training after which the learning rate is divided by 10 (a fraction, not a learning rate)
    lr_decay_at: float = field(default=0.8, metadata=allowed(bounds(0, 1)))
    recon_weight: float = 2.0
    kl_weight: float = 3.0
    reverse_weight: float = 10.0


class CycleVAE(TwoCodeMethod):
    Config = CycleVAEConfig
    content_variational = True

    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        return [Stage("cyclevae", c.epochs, c.batch_size, self._step, self._optimizers, ClassGroupSampler(2))]

    def _optimizers(self):
        c = self.config
        encoders = list(self.class_encoder.parameters()) + list(self.content_encoder.parameters())
        return {"forward": torch.optim.Adam(self.model_parameters(), lr=c.lr),
                "reverse": torch.optim.Adam(encoders, lr=c.lr)}

    def forward_cycle(self, x: torch.Tensor, ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction with swapped class codes, KL/D, class codes) on a batch of same-class pairs."""
        swap = partner(x.shape[0], x.device)
        class_code = self.class_encoder(x)
        mu, logvar = self.content_encoder(x)
        z = reparameterize(mu, logvar, ctx.randn(*mu.shape))
        rec = self.recon(self.decode(class_code[swap], z), x)
        kl = kl_standard_normal(mu, logvar).mean() / self.pixels
        return rec, kl, class_code

    def reverse_cycle(self, class_code: torch.Tensor, ctx) -> torch.Tensor:
        """L1 between the content means re-encoded from G(s_1, z) and G(s_2, z), one z per class pair.

        ``class_code`` holds consecutive same-class pairs; s_1 is the first code of each pair and
        s_2 that of another pair (a random whole shift), so the two classes differ."""
        s1 = class_code[0::2].detach()
        n = s1.shape[0]
        shift = 1 + int(ctx.randperm(n - 1)[0]) if n > 1 else 0
        s2 = s1.roll(shift, dims=0)
        z = ctx.randn(n, self.config.content_dim)
        with torch.no_grad():  # the decoder is not trained by this phase; only re-encoding carries gradient
            generated = self.decode(torch.cat([s1, s2]), torch.cat([z, z]))
        mu, _ = self.content_encoder(generated)
        return (mu[:n] - mu[n:]).abs().mean()

    def _step(self, batch, ctx):
        c = self.config
        scale = 0.1 if ctx.progress >= c.lr_decay_at else 1.0  # stateless schedule: resumes exactly
        for opt in ctx.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = c.lr * scale
        rec, kl, class_code = self.forward_cycle(batch.images, ctx)
        forward = c.recon_weight * rec + c.kl_weight * kl
        ctx.update(forward, "forward")
        reverse = self.reverse_cycle(class_code, ctx)
        ctx.update(c.reverse_weight * reverse, "reverse")
        return {"loss": forward.detach(), "reconstruction": rec.detach(), "kl": kl.detach(),
                "reverse_cycle": reverse.detach()}
