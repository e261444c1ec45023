from __future__ import annotations

import pytest
import torch

from disentbench import config as cfg
from disentbench.contracts import DataInfo, Unavailable
from disentbench.plugins import load_registries
from disentbench.training import TrainOptions
from disentbench.weights import WeightStore
from disentbench_plugins.methods.lord import LORD, LORDConfig
from conftest import TINY


def _lord(data, **over):
    torch.manual_seed(0)
    info = DataInfo.from_split(data.train, weights=WeightStore(load_registries().weights))  # as the runner passes it
    return LORD(cfg.build(LORDConfig, {**TINY["lord"], **over}), info)


def test_paper_defaults():
    c = LORDConfig()
    assert (c.class_dim, c.content_dim, c.content_std, c.content_decay) == (256, 128, 1.0, 0.001)
    assert (c.lr_generator, c.lr_latent, c.epochs, c.generator_channels, c.n_adain) == (1e-4, 1e-3, 200, 256, 4)
    assert c.recon_loss == "perceptual"


def test_first_stage_loss_decreases(tiny_data):
    method = _lord(tiny_data, epochs=30, encoder_epochs=1, batch_size=48, lr_generator=3e-3, lr_latent=3e-2)
    result = method.fit(tiny_data.train, TrainOptions(), seed=0, progress=False)
    losses = [row["reconstruction"] for row in result.log if row["stage"] == "latent"]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_second_stage_learns_the_codes(tiny_data):
    method = _lord(tiny_data, epochs=2, encoder_epochs=20, encoder_batch_size=48, lr_encoder=3e-3)
    log = method.fit(tiny_data.train, TrainOptions(), seed=0, progress=False).log
    stage2 = [row["loss"] for row in log if row["stage"] == "encoders"]
    assert stage2[-1] < stage2[0]


def test_codes_are_shared_per_class_and_noise_only_in_training(tiny_data):
    method = _lord(tiny_data)
    assert method.class_embedding.num_embeddings == 6
    assert method.content_embedding.num_embeddings == len(tiny_data.train)
    x = torch.rand(4, 3, 32, 32)
    codes = method.encode(x)
    assert codes.class_code.shape == (4, 16) and codes.content_code.shape == (4, 8)
    out = method.decode(codes.class_code, codes.content_code)
    assert out.shape == (4, 3, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert torch.equal(method.transfer(x, x), method.transfer(x, x))  # no noise at inference


def test_deterministic_under_a_seed(tiny_data):
    a = _lord(tiny_data)
    b = _lord(tiny_data)
    la = a.fit(tiny_data.train, TrainOptions(), seed=3, progress=False).log
    lb = b.fit(tiny_data.train, TrainOptions(), seed=3, progress=False).log
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(a.transfer(x, x.flip(0)), b.transfer(x, x.flip(0)))


def test_save_load_round_trip(tiny_data, tmp_path):
    a = _lord(tiny_data)
    a.fit(tiny_data.train, TrainOptions(max_steps=2), seed=0, progress=False)
    a.save(tmp_path / "state.pt")
    b = _lord(tiny_data)
    b.load(tmp_path / "state.pt")
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(a.eval().transfer(x, x.flip(0)), b.eval().transfer(x, x.flip(0)))


def test_perceptual_loss_without_weights_says_which_file(tiny_data):
    with pytest.raises(Unavailable) as exc:
        _lord(tiny_data, recon_loss="perceptual")
    message = str(exc.value)
    assert "vgg16-397923af.pth" in message and "download.pytorch.org" in message


def test_perceptual_loss_with_a_local_file(tiny_data, tmp_path, monkeypatch):
    """With a (here randomly initialised) VGG16 file placed where the error says, the loss works and
    its frozen VGG stays out of the method's state_dict."""
    import torchvision
    import hashlib

    from disentbench_plugins import weights as builtin_weights
    from disentbench import WeightSpec

    path = tmp_path / "vgg16-test.pth"
    torch.save(torchvision.models.vgg16().state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = WeightSpec(name="vgg16", description="test", sha256=digest, filename=path.name)
    monkeypatch.setattr(builtin_weights, "WEIGHTS", [spec])
    monkeypatch.setenv("DISENTBENCH_WEIGHTS", str(tmp_path))
    method = _lord(tiny_data, recon_loss="perceptual", epochs=1, encoder_epochs=1)
    assert not any(k.startswith("recon.") for k in method.state_dict())
    log = method.fit(tiny_data.train, TrainOptions(max_steps=1), progress=False).log
    assert log[0]["reconstruction"] > 0


def test_perceptual_loss_without_a_store_says_none_was_passed(tiny_data):
    """Weights come from the store the runner passes in (DataInfo.weights), never a global one."""
    with pytest.raises(Unavailable, match=r"the perceptual loss needs the pretrained weights 'vgg16', but no "
                                          r"WeightStore was passed in"):
        LORD(cfg.build(LORDConfig, {**TINY["lord"], "recon_loss": "perceptual"}), DataInfo.from_split(tiny_data.train))
