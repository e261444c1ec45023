"""Szabo et al. — "Challenges in Disentangling Independent Factors of Variation", ICLR Workshops
2018 (Szabó, Hu, Portenier, Zwicker & Favaro): the baseline LORD (Tables 1-2) and its v1 compare
with, "an autoencoder similar to DrNet, however the adversarial loss is not set on the codes but
rather on pairs of images" (LORD v1, §4).

A class encoder E_y, a content encoder E_c and a generator G, trained on pairs (x_a, x_b) of one
class and a third image x_o of (usually) another class:
    L_rec = ℓ(G(E_y(x_b), E_c(x_a)), x_a)          swap the class codes of a same-class pair
    x̃     = G(E_y(x_o), E_c(x_a))                  x_a's content rendered as x_o's class
    L_adv = −log D(x_o, x̃)                          the generator wants (x_o, x̃) to look like a real pair
    L_D   = −log D(x_o, x_o′) − log(1 − D(x_o, sg x̃))  D: real same-class pairs vs. composed ones
    L     = L_rec + λ·L_adv,   min over E_y, E_c, G;  min over D of L_D
D sees the two images of a pair stacked along the channels. A content code that carried class
information would make x̃ look like x_a's class, which D can tell from x_o's: the adversarial term
is what pushes class information out of the content code.

Not in the text available here, so chosen and recorded in the config: λ = 1, Adam with β₁ = 0.5
(GAN practice) at lr 1e-4 for both players, the spectrally normalised shared ConvDiscriminator, and
LORD's encoders, generator and code sizes (as for every baseline here, for a fair comparison).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from disentbench.contracts import DataInfo, Split
from disentbench.nn import ConvDiscriminator
from disentbench.training import ClassGroupSampler, Stage
from disentbench_plugins.methods.autoencoder import TwoCodeConfig, TwoCodeMethod
from disentbench_plugins.methods.drnet import partner


@dataclass
class SzaboConfig(TwoCodeConfig):
    batch_size: int = 64  # images: batch_size // 2 same-class pairs
    lr: float = 1e-4
    beta1: float = 0.5
    adv_weight: float = 1.0  # λ
    disc_channels: int = 64
    lr_discriminator: float = 1e-4


class Szabo(TwoCodeMethod):
    Config = SzaboConfig

    def __init__(self, config: SzaboConfig, info: DataInfo) -> None:
        super().__init__(config, info)
        self.pair_discriminator = ConvDiscriminator(info.height, 2 * info.channels, config.disc_channels)

    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        return [Stage("szabo", c.epochs, c.batch_size, self._step, self._optimizers, ClassGroupSampler(2))]

    def _optimizers(self):
        c = self.config
        return {
            "model": torch.optim.Adam(self.model_parameters(), lr=c.lr, betas=(c.beta1, 0.999)),
            "discriminator": torch.optim.Adam(self.pair_discriminator.parameters(), lr=c.lr_discriminator,
                                              betas=(c.beta1, 0.999)),
        }

    @staticmethod
    def others(n: int, ctx) -> torch.Tensor:
        """For each image of a batch of consecutive same-class pairs, an image of another pair:
        the batch shifted by a random whole number (≥ 1) of pairs."""
        pairs = n // 2
        shift = 2 * (1 + int(ctx.randperm(pairs - 1)[0])) if pairs > 1 else 0
        return (torch.arange(n, device=ctx.device) - shift) % n

    def pair_logits(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return self.pair_discriminator(torch.cat([first, second], dim=1))

    def _step(self, batch, ctx):
        c = self.config
        x = batch.images
        n = x.shape[0]
        same = partner(n, x.device)  # x_b: the other image of each pair
        other = self.others(n, ctx)  # x_o: an image of another pair
        class_code = self.class_encoder(x)
        content_code = self.content_encoder(x)
        composed = self.decode(class_code[other], content_code)  # x̃ = G(E_y(x_o), E_c(x_a))
        real_pairs = (x[other], x[same][other])  # (x_o, x_o′)
        # D first, on the detached composition
        real = self.pair_logits(*real_pairs)
        fake = self.pair_logits(x[other], composed.detach())
        disc_loss = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                     + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        ctx.update(disc_loss, "discriminator")
        rec = self.recon(self.decode(class_code[same], content_code), x)  # L_rec
        fooled = self.pair_logits(x[other], composed)
        adv = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))  # L_adv
        loss = rec + c.adv_weight * adv
        ctx.update(loss, "model")
        accuracy = 0.5 * ((real > 0).float().mean() + (fake < 0).float().mean())
        return {"loss": loss.detach(), "reconstruction": rec.detach(), "adversarial": adv.detach(),
                "discriminator": disc_loss.detach(), "discriminator_acc": accuracy.detach()}
