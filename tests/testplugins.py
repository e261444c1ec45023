"""Plugins used by the tests: an oracle method with perfect transfer, a method that fails, a
method interrupted once mid-training. Loaded with ``load_registries(plugins=[testplugins])`` or
through ``DISENTBENCH_PLUGINS=testplugins`` (like a user's local plugin)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from disentbench import MethodSpec, hookimpl
from disentbench.contracts import Codes, DataBundle
from disentbench.method import BaseMethod
from disentbench_plugins.methods.lord import LORD, LORDConfig


@dataclass
class OracleConfig:
    pass


class Oracle(BaseMethod):
    """Knows the dataset: codes are (class id, content factors); decoding looks the image up.
    Its transfers are exactly the ground truth, so transfer errors must be 0."""

    Config = OracleConfig
    bundle: DataBundle | None = None

    def __init__(self, config, info):
        super().__init__(config, info)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def fit(self, train, options, *, seed=0, checkpoint=None, progress=True):
        from disentbench.training import TrainResult

        return TrainResult(log=[{"stage": "none", "epoch": 0, "step": 1, "loss": 0.0}], seconds=0.0, images=0, steps=1)

    def _all(self):
        splits = list(self.bundle.splits.values())
        images = np.concatenate([s.images for s in splits])
        classes = np.concatenate([s.classes for s in splits])
        factors = np.concatenate([s.factors for s in splits])
        return images, classes, factors

    def encode(self, images):
        all_images, classes, factors = self._all()
        x = (images.permute(0, 2, 3, 1) * 255).round().byte().cpu().numpy()
        flat = all_images.reshape(len(all_images), -1)
        idx = [int(np.flatnonzero((flat == xi.reshape(1, -1)).all(1))[0]) for xi in x]
        return Codes(torch.tensor(classes[idx], dtype=torch.float32)[:, None],
                     torch.tensor(factors[idx], dtype=torch.float32))

    def decode(self, class_code, content_code):
        all_images, classes, factors = self._all()
        out = []
        for c, f in zip(class_code[:, 0].long().tolist(), content_code.long().tolist()):
            k = np.flatnonzero((classes == c) & (factors == np.array(f)).all(1))[0]
            out.append(all_images[k])
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0


class Failing(BaseMethod):
    Config = OracleConfig

    def __init__(self, config, info):
        super().__init__(config, info)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def fit(self, *args, **kwargs):
        raise RuntimeError("this method always fails (test plugin)")


@dataclass
class InterruptedConfig(LORDConfig):
    interrupt_at: int = 3  # global step at which the first attempt is interrupted
    marker: str = ""  # a file that exists once the interruption has happened


class InterruptedOnce(LORD):
    """LORD whose first attempt is interrupted (KeyboardInterrupt, as from Ctrl-C) mid-training."""

    Config = InterruptedConfig

    def _latent_step(self, batch, ctx):
        marker = Path(self.config.marker)
        if ctx.step + 1 == self.config.interrupt_at and not marker.exists():
            marker.write_text("interrupted")
            raise KeyboardInterrupt
        return super()._latent_step(batch, ctx)


@hookimpl
def register_methods(register):
    register(MethodSpec(name="oracle", target=Oracle, description="perfect transfer (tests)"))
    register(MethodSpec(name="failing", target=Failing, description="always fails (tests)"))
    register(MethodSpec(name="interrupted", target=InterruptedOnce, description="interrupted once (tests)"))
    register(MethodSpec(name="tiny-ae-test", target=TinyAE, description="deterministic autoencoder (tests)",
                        supervision="unsupervised"))


@dataclass
class TinyAEConfig:
    epochs: int = 2
    batch_size: int = 8
    dim: int = 8
    lr: float = 1e-3


class TinyAE(BaseMethod):
    """A small deterministic two-code autoencoder (no noise): for data-parallel equivalence tests."""

    Config = TinyAEConfig

    def __init__(self, config, info):
        super().__init__(config, info)
        from disentbench.nn import ConvDecoder, ConvEncoder

        self.enc = ConvEncoder(2 * config.dim, info.height, info.channels, 8, 16, 16)
        self.dec = ConvDecoder(2 * config.dim, info.height, info.channels, 16, 8)

    def encode(self, x):
        z = self.enc(x)
        return Codes(z[:, : self.config.dim], z[:, self.config.dim:])

    def decode(self, a, b):
        return self.dec(torch.cat([a, b], 1))

    def stages(self, train):
        from disentbench.training import Stage

        def step(batch, ctx):
            loss = (self.decode(*self.encode(batch.images)) - batch.images).pow(2).mean()
            ctx.update(loss)
            return {"loss": loss.detach()}

        return [Stage("ae", self.config.epochs, self.config.batch_size, step,
                      lambda: {"adam": torch.optim.Adam(self.parameters(), self.config.lr)})]
