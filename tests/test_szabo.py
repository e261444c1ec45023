"""szabo (Szabo et al. 2018): the pair discriminator, the swap reconstruction and the adversarial
term on image pairs do what the method says; a few steps reduce the reconstruction loss."""
from __future__ import annotations

import numpy as np
import torch

from disentbench import config as cfg
from disentbench.contracts import DataInfo
from disentbench.training import Batch, ClassGroupSampler, StepContext
from disentbench_plugins.methods.szabo import Szabo, SzaboConfig

SMALL = {"recon_loss": "l1", "generator_channels": 16, "generator_last_channels": 8, "generator_last_kernel": 3,
         "encoder_channels": 8, "encoder_hidden": 32, "class_dim": 8, "content_dim": 4, "disc_channels": 8}


def make(data, **over) -> Szabo:
    torch.manual_seed(0)
    return Szabo(cfg.build(SzaboConfig, {**SMALL, **over}), DataInfo.from_split(data.train))


def pairs_batch(data, n_pairs: int = 4) -> Batch:
    labels = np.unique(data.train.classes, return_inverse=True)[1]
    index = np.concatenate([np.flatnonzero(labels == c)[:2] for c in range(n_pairs)])
    x = torch.from_numpy(data.train.images[index]).permute(0, 3, 1, 2).float() / 255
    return Batch(images=x, index=torch.from_numpy(index), labels=torch.from_numpy(labels[index]), group_size=2)


def context(method, steps: int = 10, seed: int = 0) -> StepContext:
    return StepContext(method.stages(None)[0].optimizers(), torch.device("cpu"), "fp32",
                       torch.Generator().manual_seed(seed), steps)


def test_defaults_and_sampler():
    c = SzaboConfig()
    assert (c.class_dim, c.content_dim, c.adv_weight, c.lr, c.beta1, c.recon_loss) == (256, 128, 1.0, 1e-4, 0.5, "perceptual")


def test_pairs_and_others(tiny_data):
    method = make(tiny_data)
    assert isinstance(method.stages(None)[0].sampler, ClassGroupSampler)
    assert method.stages(None)[0].sampler.group_size == 2
    batch = pairs_batch(tiny_data)
    ctx = context(method)
    other = method.others(len(batch.labels), ctx)
    assert sorted(other.tolist()) == list(range(len(batch.labels)))  # a permutation
    assert (batch.labels[other] != batch.labels).all()  # always an image of another pair (another class here)
    assert (other % 2 == torch.arange(len(other)) % 2).all()  # pairs move as pairs: (x_o, x_o') stays a real pair
    logits = method.pair_logits(batch.images, batch.images)
    assert logits.shape == (len(batch.labels),)
    assert method.pair_discriminator.conv[0].weight_orig.shape[1] == 6  # two RGB images stacked


def test_adversarial_term_reaches_the_content_encoder_only_through_the_composition(tiny_data, monkeypatch):
    method = make(tiny_data, adv_weight=1.0)
    batch = pairs_batch(tiny_data)
    ctx = context(method)
    recon = method.recon
    monkeypatch.setattr(method, "recon", lambda a, b: 0.0 * recon(a, b))  # only the adversarial term is left
    before = [p.detach().clone() for p in method.content_encoder.parameters()]
    method._step(batch, ctx)
    assert any(not torch.equal(a, b) for a, b in zip(before, method.content_encoder.parameters()))
    method2 = make(tiny_data, adv_weight=0.0)
    monkeypatch.setattr(method2, "recon", lambda a, b: 0.0 * recon(a, b))
    before = [p.detach().clone() for p in method2.content_encoder.parameters()]
    method2._step(batch, context(method2))
    assert all(torch.equal(a, b) for a, b in zip(before, method2.content_encoder.parameters()))


def test_reconstruction_swaps_class_codes_within_a_pair(tiny_data, monkeypatch):
    method = make(tiny_data)
    batch = pairs_batch(tiny_data)
    seen = {}
    decode = method.decode

    def spy(class_code, content_code):
        seen.setdefault("calls", []).append(class_code.detach().clone())
        return decode(class_code, content_code)

    monkeypatch.setattr(method, "decode", spy)
    method._step(batch, context(method))
    class_codes = method.class_encoder(batch.images)  # after the update; compare the layout with the old codes
    swapped = seen["calls"][1]  # the second decode is the reconstruction
    assert swapped.shape == class_codes.shape
    torch.manual_seed(0)
    fresh = make(tiny_data)
    codes = fresh.class_encoder(batch.images).detach()
    swap = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])
    assert torch.allclose(swapped, codes[swap])


def test_a_few_steps_reduce_the_reconstruction_loss(tiny_data):
    method = make(tiny_data, lr=3e-3, lr_discriminator=3e-3)
    method.train()
    batch = pairs_batch(tiny_data)
    ctx = context(method, steps=40)
    losses = []
    for _ in range(40):
        losses.append(float(method._step(batch, ctx)["reconstruction"]))
        ctx.step += 1
    assert np.median(losses[-5:]) < 0.8 * np.median(losses[:5]), losses  # median: a GAN step may spike
