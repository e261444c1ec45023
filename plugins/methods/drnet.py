"""DrNet — Denton & Birodkar, "Unsupervised Learning of Disentangled Representations from Video",
NeurIPS 2017.

A class ("content"/scene in the paper) encoder E_y, a content ("pose") encoder E_c and a decoder G,
trained on pairs of images of one class (two frames of one video in the paper):
(paper §3; sg = stop-gradient, as in the authors' code)
    L     = L_rec + α·L_sim + β·L_adv                            the full objective
    L_rec = ℓ(G(E_y(x_a), E_c(x_b)), x_b)        class code from the other image of the pair
    L_sim = ‖E_y(x_a) − sg(E_y(x_b))‖²            class codes of one class agree
    L_adv = −½log C(E_c(x_a), sg E_c(x_b)) − ½log(1 − C(·))   the content encoder maximises the
            entropy of the scene discriminator on same-class pairs (BCE against ½)
The scene discriminator C learns, on pairs of detached content codes, whether they share a class:
    L_C = −log C(E_c(x_a), E_c(x_b)) − log(1 − C(E_c(x_a), E_c(x_j))),   x_j of another class.
Each image of a pair is the reconstruction target once, with the class code of its partner.

Defaults follow the authors' code (drnet-py): Adam lr 2e-3 (β₁ 0.9), 100 images a batch, α = 1,
β = 1e-4, a discriminator with 2 hidden layers of 100 units. Architecture and code sizes are the
shared LORD ones (the authors' 128/10 codes were for KTH/MNIST), as are the 200 epochs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from disentbench.contracts import DataInfo, Split
from disentbench.nn import CodeDiscriminator
from disentbench.training import ClassGroupSampler, Stage
from disentbench_plugins.methods.autoencoder import TwoCodeConfig, TwoCodeMethod


@dataclass
class DrNetConfig(TwoCodeConfig):
    batch_size: int = 100
    lr: float = 2e-3
    beta1: float = 0.9
    sim_weight: float = 1.0  # α
    adv_weight: float = 1e-4  # β (sd_weight)
    disc_hidden: int = 100
    disc_layers: int = 3  # 2 hidden layers + output
    lr_discriminator: float = 2e-3


def partner(n: int, device: torch.device) -> torch.Tensor:
    """Index of the other image of each consecutive pair: [1, 0, 3, 2, ...]."""
    idx = torch.arange(n, device=device)
    return idx + 1 - 2 * (idx % 2)


class DrNet(TwoCodeMethod):
    Config = DrNetConfig

    def __init__(self, config: DrNetConfig, info: DataInfo) -> None:
        super().__init__(config, info)
        self.scene_discriminator = CodeDiscriminator(2 * config.content_dim, config.disc_hidden, config.disc_layers)

    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        return [Stage("drnet", c.epochs, c.batch_size, self._step, self._optimizers, ClassGroupSampler(2))]

    def _optimizers(self):
        c = self.config
        return {
            "model": torch.optim.Adam(self.model_parameters(), lr=c.lr, betas=(c.beta1, 0.999)),
            "discriminator": torch.optim.Adam(self.scene_discriminator.parameters(), lr=c.lr_discriminator,
                                              betas=(c.beta1, 0.999)),
        }

    def discriminator_loss(self, content: torch.Tensor, ctx) -> tuple[torch.Tensor, torch.Tensor]:
        """BCE of C on same-class pairs (target 1) and different-class pairs (target 0), and its accuracy.

        Negatives pair each code with one from another pair, shifted by a random whole number of
        pairs, so with a class-group batch of distinct classes they are always of another class."""
        n = content.shape[0]
        other = content[partner(n, content.device)]
        pairs = n // 2
        shift = 2 * (1 + int(ctx.randperm(pairs - 1)[0])) if pairs > 1 else 0
        negative = content.roll(shift, dims=0)
        logits = self.scene_discriminator(torch.cat([torch.cat([content, other], 1),
                                                     torch.cat([content, negative], 1)], 0))
        target = torch.cat([torch.ones(n, device=content.device), torch.zeros(n, device=content.device)])
        loss = F.binary_cross_entropy_with_logits(logits, target)
        accuracy = ((logits > 0).float() == target).float().mean()
        return loss, accuracy

    def entropy_loss(self, content: torch.Tensor) -> torch.Tensor:
        """L_adv: BCE of C on same-class pairs against ½, minimised when C cannot tell."""
        other = content[partner(content.shape[0], content.device)].detach()
        logits = self.scene_discriminator(torch.cat([content, other], 1))
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 0.5))

    def _step(self, batch, ctx):
        c = self.config
        x = batch.images
        swap = partner(x.shape[0], x.device)  # batch: consecutive same-class pairs
        class_code = self.class_encoder(x)
        content_code = self.content_encoder(x)
        # the scene discriminator first, on detached content codes (as in the authors' loop)
        disc_loss, disc_acc = self.discriminator_loss(content_code.detach(), ctx)
        ctx.update(disc_loss, "discriminator")
        rec = self.recon(self.decode(class_code[swap], content_code), x)  # L_rec
        sim = (class_code - class_code[swap].detach()).pow(2).mean()  # L_sim
        adv = self.entropy_loss(content_code)  # L_adv
        loss = rec + c.sim_weight * sim + c.adv_weight * adv  # L = L_rec + α·L_sim + β·L_adv
        ctx.update(loss, "model")
        return {"loss": loss.detach(), "reconstruction": rec.detach(), "similarity": sim.detach(),
                "adversarial": adv.detach(), "discriminator": disc_loss.detach(), "discriminator_acc": disc_acc}
