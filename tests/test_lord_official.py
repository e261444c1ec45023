"""LORD where the paper is silent: the official lord-pytorch code's output kernels (5×5 then 7×7),
LeakyReLU slope (0.01) and un-normalised VGG inputs are the defaults; each is an option."""
from __future__ import annotations

import torch
from torch import nn

from conftest import TINY
from disentbench import config as cfg
from disentbench.contracts import DataInfo
from disentbench_plugins.methods.lord import LORD, LORDConfig

SMALL = {k: v for k, v in TINY["lord"].items() if k not in ("generator_last_kernel", "generator_penultimate_kernel")}


def _lord(data, store=None, **over):
    torch.manual_seed(0)
    return LORD(cfg.build(LORDConfig, {**SMALL, **over}), DataInfo.from_split(data.train, weights=store))


def _slopes(module: nn.Module) -> set[float]:
    return {m.negative_slope for m in module.modules() if isinstance(m, nn.LeakyReLU)}


def test_defaults_are_the_official_codes_and_build_that_network(tiny_data):
    c = LORDConfig()
    assert (c.generator_penultimate_kernel, c.generator_last_kernel, c.leaky_slope, c.vgg_imagenet_normalize) == (5, 7, 0.01, False)
    method = _lord(tiny_data)
    convs = [m for m in method.generator.last if isinstance(m, nn.Conv2d)]
    assert [conv.kernel_size for conv in convs] == [(5, 5), (7, 7)] and [conv.padding for conv in convs] == [(2, 2), (3, 3)]
    for net in (method.generator, method.class_encoder, method.content_encoder):
        assert _slopes(net) == {0.01}
    assert method.generator.slope == 0.01  # the slope of the functional LeakyReLU after each AdaIN block's conv


def test_the_options_change_the_network(tiny_data):
    method = _lord(tiny_data, generator_penultimate_kernel=7, generator_last_kernel=3, leaky_slope=0.2)
    assert [m.kernel_size for m in method.generator.last if isinstance(m, nn.Conv2d)] == [(7, 7), (3, 3)]
    for net in (method.generator, method.class_encoder, method.content_encoder):
        assert _slopes(net) == {0.2}
    # the slope reaches the forward pass: the same weights give other outputs with another slope
    other = _lord(tiny_data, generator_penultimate_kernel=7, generator_last_kernel=3, leaky_slope=0.01)
    other.load_state_dict(method.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(method.reconstruct(x), other.reconstruct(x))


def test_vgg_inputs_are_imagenet_normalised_only_when_asked(tiny_data, monkeypatch):
    """With a stand-in VGG whose layers are identities, the first feature map is the VGG input."""
    import torchvision

    import disentbench.weights

    class FakeVGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*[nn.Identity() for _ in range(31)])

        def load_state_dict(self, state, strict=True):
            return None

    class FakeStore:
        def load_state_dict(self, name):
            return {}

    monkeypatch.setattr(torchvision.models, "vgg16", FakeVGG)
    x = torch.rand(2, 3, 32, 32)
    raw = _lord(tiny_data, FakeStore(), recon_loss="perceptual").recon  # the official code's default
    assert torch.equal(raw._features(x)[0], x)
    normed = _lord(tiny_data, FakeStore(), recon_loss="perceptual", vgg_imagenet_normalize=True).recon
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(normed._features(x)[0], (x - mean) / std)
