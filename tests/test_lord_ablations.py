"""LORD's Table 3 ablations as config options: each variant builds what its row describes, trains,
and the defaults stay the full method."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from disentbench import config as cfg
from disentbench.contracts import DataInfo
from disentbench.training import Batch, ClassGroupSampler, StepContext, TrainOptions
from disentbench_plugins.methods.lord import LORD, LORDConfig
from conftest import TINY


def _lord(data, **over):
    torch.manual_seed(0)
    return LORD(cfg.build(LORDConfig, {**TINY["lord"], **over}), DataInfo.from_split(data.train))


def _batch(data, per_class: int = 3, n_classes: int = 3) -> Batch:
    labels = np.unique(data.train.classes, return_inverse=True)[1]
    index = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(n_classes)])
    x = torch.from_numpy(data.train.images[index]).permute(0, 3, 1, 2).float() / 255
    return Batch(images=x, index=torch.from_numpy(index), labels=torch.from_numpy(labels[index]))


def _ctx(method, stage: int = 0) -> StepContext:
    return StepContext(method.stages(None)[stage].optimizers(), torch.device("cpu"), "fp32",
                       torch.Generator().manual_seed(0), 10)


def test_defaults_are_the_full_method(tiny_data):
    c = LORDConfig()
    assert (c.variant, c.regularization, c.second_stage) == ("latent", "noise", True)
    method = _lord(tiny_data)
    prefixes = {k.split(".")[0] for k in method.state_dict()}
    assert prefixes == {"class_embedding", "content_embedding", "generator", "class_encoder", "content_encoder"}
    assert [s.name for s in method.stages(tiny_data.train)] == ["latent", "encoders"]


def test_invalid_combinations_are_config_errors():
    with pytest.raises(cfg.ConfigError, match="needs a content encoder"):
        cfg.build(LORDConfig, {"regularization": "kl"})
    with pytest.raises(cfg.ConfigError, match="second_stage"):
        cfg.build(LORDConfig, {"variant": "amortized", "second_stage": False})


def test_amortized_averages_class_codes_within_a_class(tiny_data):
    method = _lord(tiny_data, variant="amortized")
    assert not hasattr(method, "class_embedding") and not hasattr(method, "content_embedding")
    stages = method.stages(tiny_data.train)
    assert [s.name for s in stages] == ["latent"] and isinstance(stages[0].sampler, ClassGroupSampler)
    batch = _batch(tiny_data)
    codes = method._class_codes(batch)
    raw = method.class_encoder(batch.images)
    for c in batch.labels.unique():
        rows = codes[batch.labels == c]
        assert torch.allclose(rows, rows[0].expand_as(rows))  # one code per class in the batch
        assert torch.allclose(rows[0], raw[batch.labels == c].mean(0), atol=1e-6)
    before = [p.detach().clone() for p in method.class_encoder.parameters()]
    method._latent_step(batch, _ctx(method))
    assert any(not torch.equal(a, b) for a, b in zip(before, method.class_encoder.parameters())), \
        "stage 1 of the amortized variant must train the class encoder"


def test_semi_amortized_learns_class_embeddings_and_a_content_encoder(tiny_data):
    method = _lord(tiny_data, variant="semi-amortized")
    assert hasattr(method, "class_embedding") and not hasattr(method, "content_embedding")
    assert [s.name for s in method.stages(tiny_data.train)] == ["latent", "encoders"]
    batch = _batch(tiny_data)
    emb, enc = method.class_embedding.weight.detach().clone(), [p.detach().clone() for p in method.content_encoder.parameters()]
    method._latent_step(batch, _ctx(method))
    assert not torch.equal(emb, method.class_embedding.weight)
    assert any(not torch.equal(a, b) for a, b in zip(enc, method.content_encoder.parameters()))
    # stage 2 trains E_y (to the embeddings) and G, not E_c, which already gives the content codes
    frozen = [p.detach().clone() for p in method.content_encoder.parameters()]
    method._encoder_step(batch, _ctx(method, 1))
    assert all(torch.equal(a, b) for a, b in zip(frozen, method.content_encoder.parameters()))


def test_kl_regularisation_uses_a_gaussian_content_encoder(tiny_data):
    method = _lord(tiny_data, variant="amortized", regularization="kl", kl_weight=0.5)
    batch = _batch(tiny_data)
    z, reg, logged = method._regularised_content(batch, _ctx(method))
    mean, logvar = method._content(batch.images)
    assert logvar is not None and "kl" in logged
    assert torch.allclose(reg, 0.5 * 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean())
    assert not torch.allclose(z, mean)  # sampled
    assert torch.equal(method.encode(batch.images).content_code, mean)  # the posterior mean at test time


def test_without_regularisation_there_is_no_noise_and_no_decay(tiny_data):
    method = _lord(tiny_data, regularization="none")
    batch = _batch(tiny_data)
    z, reg, _ = method._regularised_content(batch, _ctx(method))
    assert torch.equal(z, method.content_embedding(batch.index)) and float(reg) == 0.0
    noisy, reg_noise, _ = _lord(tiny_data)._regularised_content(batch, _ctx(method))
    assert float(reg_noise.detach()) > 0 and not torch.equal(noisy, z)


def test_first_stage_only_infers_codes_by_latent_optimisation(tiny_data):
    method = _lord(tiny_data, second_stage=False, inference_steps=30, lr_inference=5e-2)
    assert [s.name for s in method.stages(tiny_data.train)] == ["latent"]
    assert not hasattr(method, "class_encoder")
    method.fit(tiny_data.train, TrainOptions(max_steps=5), seed=0, progress=False)
    method.eval()
    x = _batch(tiny_data).images
    generator = {k: v.clone() for k, v in method.generator.state_dict().items()}
    with torch.no_grad():  # as the harness calls it
        codes = method.encode(x)
        start = method.decode(method.class_embedding.weight.mean(0).expand(len(x), -1),
                              torch.zeros(len(x), method.config.content_dim))
        fitted = method.decode(codes.class_code, codes.content_code)
    assert (fitted - x).abs().mean() < (start - x).abs().mean()
    assert all(torch.equal(v, method.generator.state_dict()[k]) for k, v in generator.items()), "G must stay frozen"
    assert torch.equal(method.encode(x).content_code, codes.content_code)  # deterministic


@pytest.mark.parametrize("over", [
    {"variant": "amortized"}, {"variant": "amortized", "regularization": "kl"},
    {"variant": "semi-amortized"}, {"variant": "semi-amortized", "regularization": "kl"},
    {"second_stage": False, "inference_steps": 3}, {"regularization": "none"},
])
def test_every_ablation_trains_and_transfers(over, tiny_data, tmp_path):
    method = _lord(tiny_data, **over)
    log = method.fit(tiny_data.train, TrainOptions(max_steps=2), seed=0, progress=False).log
    assert all(np.isfinite(row["loss"]) for row in log)
    method.eval()
    x = torch.from_numpy(tiny_data.test.images[:4]).permute(0, 3, 1, 2).float() / 255
    out = method.transfer(x, x.flip(0))
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    method.save(tmp_path / "s.pt")
    again = _lord(tiny_data, **over)
    again.load(tmp_path / "s.pt")
    assert torch.equal(again.eval().transfer(x, x.flip(0)), out)
