"""The unsupervised methods: β-VAE, FactorVAE (with the post-training class/content split of their
latent dimensions) and C-S fusion (content normalisation, capacity schedule, instance discrimination)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from disentbench import config as cfg
from disentbench.contracts import DataInfo, Split
from disentbench.nn import AdaINGenerator
from disentbench.nn.latent_split import LatentSplit, correlation_ratio
from disentbench.nn.resnet import ResNet18
from disentbench.training import TrainOptions
from disentbench_plugins.methods.betavae import BetaVAE, BetaVAEConfig
from disentbench_plugins.methods.csfusion import (
    CSFusion, CSFusionConfig, capacity, instance_discrimination_loss, normalize_content, pair_swap,
)
from disentbench_plugins.methods.factorvae import FactorVAE, FactorVAEConfig, permute_dims

SMALL = {"recon_loss": "l1", "generator_channels": 16, "generator_last_channels": 8, "generator_last_kernel": 3,
         "encoder_channels": 8, "encoder_hidden": 32}
TINY = {
    "betavae": {**SMALL, "latent_dim": 8, "class_dims": 3, "epochs": 2, "batch_size": 16},
    "factorvae": {**SMALL, "latent_dim": 8, "class_dims": 3, "epochs": 2, "batch_size": 8, "discriminator_hidden": 32},
    "csfusion": {**SMALL, "style_dim": 16, "content_dim": 8, "id_width": 4, "id_epochs": 1, "id_batch_size": 16,
                 "epochs": 2, "batch_size": 16, "encoder_epochs": 1, "encoder_batch_size": 16},
}
CLASSES = {"betavae": BetaVAE, "factorvae": FactorVAE, "csfusion": CSFusion}


def _build(name: str, data_or_split, seed: int = 0, **over):
    split = data_or_split.train if hasattr(data_or_split, "train") else data_or_split
    cls = CLASSES[name]
    torch.manual_seed(seed)
    return cls(cfg.build(cls.Config, {**TINY[name], **over}, where=name), DataInfo.from_split(split))


def _first_images(data, n: int = 16) -> Split:
    return data.train.subset(np.arange(n))


# -- paper defaults -------------------------------------------------------------------------------
def test_paper_defaults():
    b, f, c = BetaVAEConfig(), FactorVAEConfig(), CSFusionConfig()
    assert (b.latent_dim, b.beta, b.lr, b.batch_size) == (32, 5.0, 1e-4, 64)
    assert (f.latent_dim, f.gamma, f.lr, f.lr_discriminator, f.discriminator_betas) == (10, 6.4, 1e-4, 1e-4, (0.5, 0.9))
    assert (f.discriminator_layers, f.discriminator_hidden) == (6, 1000)
    assert (c.style_dim, c.content_dim, c.lr_model, c.lr_latent, c.epochs) == (256, 128, 3e-4, 3e-3, 200)
    assert c.noise_std == 1.0
    assert (c.weight_recon, c.weight_bottleneck, c.weight_instance) == (5.0, 1.0, 1.0)
    assert (c.content_capacity_start, c.content_capacity_max, c.content_capacity_steps) == (2.0, 5.0, 140_000)
    assert (c.content_gamma, c.style_gamma, c.id_layer_weights) == (1.0, 0.0, (1.0,) * 5)
    assert c.recon_loss == "perceptual" and c.fusion == "multiple" and c.normalization == "instance"


# -- a few optimisation steps reduce the loss on a tiny batch -------------------------------------
@pytest.mark.parametrize("name,stage,key,over", [
    ("betavae", "vae", "reconstruction", {"epochs": 25, "lr": 2e-3}),
    ("factorvae", "vae", "reconstruction", {"epochs": 25, "lr": 2e-3}),
    ("csfusion", "latent", "reconstruction", {"epochs": 25, "lr_model": 3e-3, "lr_latent": 3e-2}),
])
def test_a_few_steps_reduce_the_loss(tiny_data, name, stage, key, over):
    split = _first_images(tiny_data, 16)
    method = _build(name, split, **over)
    log = method.fit(split, TrainOptions(), seed=0, progress=False).log
    values = [row[key] for row in log if row["stage"] == stage]
    assert len(values) == 25
    assert np.mean(values[-3:]) < 0.8 * np.mean(values[:3]), values


# -- the class/content split of β-VAE and FactorVAE -----------------------------------------------
def test_correlation_ratio_and_split_pick_the_dimension_that_carries_the_class():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(20)
    codes = torch.randn(200, 6, generator=g)
    codes[:, 4] = labels.float() + 0.1 * torch.randn(200, generator=g)  # carries the class
    codes[:, 2] = 0.0  # an inactive unit
    eta = correlation_ratio(codes, labels)
    assert eta[4] > 0.99 and eta[2] == 0 and (eta[[0, 1, 3, 5]] < 0.2).all()
    split = LatentSplit(6, 1)
    split.fit(codes, labels)
    assert split.class_index.tolist() == [4] and split.content_index.tolist() == [0, 1, 2, 3, 5]
    z = torch.randn(3, 6, generator=g)
    assert torch.equal(split.merge(*split.split(z)), z)
    with pytest.raises(ValueError, match="class_dims"):
        LatentSplit(6, 6)


class _StubEncoder(nn.Module):
    """μ = (mean of channel 1, mean of channel 0, a constant): channel 0 carries the class."""

    def forward(self, x):
        mu = torch.stack([x[:, 1].mean(dim=(1, 2)), x[:, 0].mean(dim=(1, 2)), torch.zeros(len(x))], 1)
        return mu, torch.zeros_like(mu)


@pytest.mark.parametrize("name", ["betavae", "factorvae"])
def test_split_after_training_finds_the_class_dimension_of_a_constructed_case(name):
    rng = np.random.default_rng(0)
    classes = np.repeat(np.arange(4), 6)
    images = np.zeros((24, 32, 32, 3), dtype=np.uint8)
    images[..., 0] = (40 * classes + 20)[:, None, None]  # the class shows in channel 0 only
    images[..., 1] = rng.integers(0, 255, size=(24, 1, 1))  # "content" in channel 1
    split = Split(images=images, classes=classes)
    method = _build(name, split, latent_dim=3, class_dims=1)
    method.encoder = _StubEncoder()
    method.fit_split(split, torch.device("cpu"))
    assert method.latent_split.class_index.tolist() == [1]
    assert method.latent_split.info()["latent_split"]["class_dims"] == [1]


@pytest.mark.parametrize("name", ["betavae", "factorvae"])
def test_split_is_deterministic_recorded_and_survives_save_load(tiny_data, tmp_path, name):
    results, methods = [], []
    for _ in range(2):
        method = _build(name, tiny_data)
        results.append(method.fit(tiny_data.train, TrainOptions(max_steps=3), seed=1, progress=False))
        methods.append(method)
    info = results[0].info["latent_split"]
    assert info == results[1].info["latent_split"] and info["fitted"]
    assert len(info["class_dims"]) == 3 and sorted(info["class_dims"] + info["content_dims"]) == list(range(8))
    eta = np.array(info["eta2"])
    assert eta[info["class_dims"]].min() >= eta[info["content_dims"]].max()  # the top 3 by η²
    methods[0].save(tmp_path / "state.pt")
    again = _build(name, tiny_data, seed=99)
    assert not bool(again.latent_split.fitted)
    again.load(tmp_path / "state.pt")
    assert again.latent_split.class_index.tolist() == info["class_dims"] and bool(again.latent_split.fitted)
    x = torch.from_numpy(tiny_data.test.images[:4]).permute(0, 3, 1, 2).float() / 255
    a, b = methods[0].encode(x), again.encode(x)
    assert a.class_code.shape == (4, 3) and a.content_code.shape == (4, 5)
    assert torch.equal(a.class_code, b.class_code) and torch.equal(a.content_code, b.content_code)


# -- FactorVAE's permutation ------------------------------------------------------------------------
def test_permute_dims_shuffles_each_dimension_independently():
    g = torch.Generator().manual_seed(0)
    z = torch.arange(64 * 5, dtype=torch.float32).view(64, 5)  # every entry distinct
    out = permute_dims(z, torch.rand(64, 5, generator=g))
    for d in range(5):  # each column holds exactly its own values ...
        assert torch.equal(out[:, d].sort().values, z[:, d])
    rows = (out - z[0]) / 5  # ... each moved by its own permutation of the rows
    perms = [tuple(rows[:, d].round().long().tolist()) for d in range(5)]
    assert len(set(perms)) == 5 and all(p != tuple(range(64)) for p in perms)
    # perfectly dependent dimensions become (nearly) uncorrelated
    x = torch.randn(4000, generator=g)
    dependent = torch.stack([x, x], 1)
    shuffled = permute_dims(dependent, torch.rand(4000, 2, generator=g))
    assert abs(float(torch.corrcoef(shuffled.T)[0, 1])) < 0.1


def test_factorvae_discriminator_has_its_own_optimizer(tiny_data):
    method = _build("factorvae", tiny_data)
    opts = method._optimizers()
    assert set(opts) == {"vae", "discriminator"}
    d_params = {id(p) for p in method.discriminator.parameters()}
    assert {id(p) for group in opts["discriminator"].param_groups for p in group["params"]} == d_params
    assert not d_params & {id(p) for group in opts["vae"].param_groups for p in group["params"]}


# -- C-S fusion ----------------------------------------------------------------------------------
def test_content_normalisation_gives_the_shared_distribution():
    g = torch.Generator().manual_seed(0)
    c = 3.0 * torch.randn(10, 128, generator=g) + 5.0
    inst = normalize_content(c, "instance")
    assert torch.allclose(inst.mean(dim=1), torch.zeros(10), atol=1e-5)
    assert torch.allclose(inst.var(dim=1, unbiased=False), torch.ones(10), atol=1e-4)
    l2 = normalize_content(c, "l2")
    assert torch.allclose(l2.norm(dim=1), torch.ones(10), atol=1e-6)
    assert torch.allclose(normalize_content(l2, "l2"), l2)  # idempotent: encode's codes decode alike


def test_capacity_schedule_increases_then_stays():
    values = [capacity(step, 2.0, 5.0, 100) for step in range(0, 200, 10)]
    assert values[0] == 2.0 and values[10] == 5.0 and values[-1] == 5.0
    assert all(b > a for a, b in zip(values[:11], values[1:11]))


def test_capacity_in_training_rises_with_the_step(tiny_data):
    method = _build("csfusion", tiny_data, weight_instance=0.0, content_capacity_steps=4, epochs=3,
                    encoder_epochs=1)
    log = method.fit(tiny_data.train, TrainOptions(), seed=0, progress=False).log
    caps = [row["content_capacity"] for row in log if row["stage"] == "latent"]
    assert caps[:6] == [2.0, 2.75, 3.5, 4.25, 5.0, 5.0] and caps[-1] == 5.0


def test_bottleneck_pulls_the_content_power_to_the_capacity_and_leaves_style_alone(tiny_data):
    split = _first_images(tiny_data, 16)
    method = _build("csfusion", split, weight_recon=0.0, weight_instance=0.0, epochs=40, encoder_epochs=1,
                    content_capacity_start=2.0, content_capacity_max=2.0, lr_latent=3e-2)
    log = [row for row in method.fit(split, TrainOptions(), seed=0, progress=False).log if row["stage"] == "latent"]
    assert log[0]["content_power"] < 0.01 and abs(log[-1]["content_power"] - 2.0) < 0.3  # mean c² per dimension
    assert torch.allclose(method.content_embedding.weight.pow(2).mean(dim=1), torch.full((16,), 2.0), atol=0.5)
    assert log[-1]["style_power"] == pytest.approx(log[0]["style_power"])  # γ_s = 0: style is not pulled


def test_instance_discrimination_loss_is_lower_for_matching_pairs(tiny_data):
    torch.manual_seed(0)
    phi = ResNet18(3, 8).eval()
    x = torch.from_numpy(tiny_data.train.images[:8]).permute(0, 3, 1, 2).float() / 255
    same = (x + 0.02 * torch.randn(x.shape)).clamp(0, 1)  # the same instances, slightly perturbed
    other = torch.from_numpy(tiny_data.train.images[-8:]).permute(0, 3, 1, 2).float() / 255  # other classes
    weights = (1.0,) * 5
    with torch.no_grad():
        assert float(instance_discrimination_loss(phi, x, x, weights)) == 0.0
        matching = instance_discrimination_loss(phi, same, x, weights)
        assert matching < instance_discrimination_loss(phi, other, x, weights)


def test_pair_swap_pairs_consecutive_images():
    assert pair_swap(6).tolist() == [1, 0, 3, 2, 5, 4]
    assert pair_swap(5).tolist() == [1, 0, 3, 2, 4]


@pytest.mark.parametrize("fusion,normalization", [("single", "l2"), ("multiple", "instance")])
def test_fusion_variants(tiny_data, fusion, normalization):
    method = _build("csfusion", tiny_data, fusion=fusion, normalization=normalization)
    assert (method.generator.modulation is None) == (fusion == "single")
    x = torch.from_numpy(tiny_data.test.images[:4]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        codes = method.encode(x)
        out = method.decode(codes.class_code, codes.content_code)
    assert codes.class_code.shape == (4, 16) and codes.content_code.shape == (4, 8)
    if normalization == "l2":
        assert torch.allclose(codes.content_code.norm(dim=1), torch.ones(4), atol=1e-5)
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1


def test_csfusion_never_uses_class_labels(tiny_data):
    """Relabelling every training image changes nothing: the method is unsupervised."""
    relabelled = dataclasses.replace(tiny_data.train, classes=np.arange(len(tiny_data.train)) % 2)
    logs = []
    for split in (tiny_data.train, relabelled):
        method = _build("csfusion", tiny_data)
        logs.append(method.fit(split, TrainOptions(max_steps=2), seed=0, progress=False).log)
    assert logs[0] == logs[1]


def test_instance_stage_keeps_the_memory_bank_normalised_and_phi_is_frozen_afterwards(tiny_data):
    method = _build("csfusion", tiny_data, id_epochs=3)
    log = method.fit(tiny_data.train, TrainOptions(max_steps=3), seed=0, progress=False).log
    assert [row["stage"] for row in log][:3] == ["instance"] * 3
    assert torch.allclose(method.memory_bank.norm(dim=1), torch.ones(len(tiny_data.train)), atol=1e-5)
    assert not any(p.requires_grad for p in method.phi.parameters())
    opts = method._latent_optimizers()["latent"]
    latent_params = {id(p) for group in opts.param_groups for p in group["params"]}
    assert not latent_params & {id(p) for p in method.phi.parameters()}


def test_generator_without_style_is_a_plain_generator():
    g = AdaINGenerator(8, 0, resolution=32, channels=16, last_channels=8, last_kernel=3)
    assert g.modulation is None
    with torch.no_grad():
        out = g(torch.randn(64, 8, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (64, 3, 32, 32)
    assert float(out.std(dim=0).mean()) > 0.01  # the output depends on the code from the start
    with pytest.raises(ValueError, match="style"):
        g(torch.randn(2, 8), torch.randn(2, 4))
    styled = AdaINGenerator(8, 4, resolution=32, channels=16, last_channels=8, last_kernel=3)
    with pytest.raises(ValueError, match="style"):
        styled(torch.randn(2, 8))
