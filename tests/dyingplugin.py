"""A method plugin whose worker process dies (as if killed, out of memory) for one seed: loaded
with ``DISENTBENCH_PLUGINS=testplugins,dyingplugin`` by the --jobs fault test."""
from __future__ import annotations

import os
from dataclasses import dataclass

from disentbench import MethodSpec, hookimpl
from testplugins import TinyAE, TinyAEConfig


@dataclass
class DyingConfig(TinyAEConfig):
    epochs: int = 1
    die_seed: int = 1  # the seed whose worker process dies


class Dying(TinyAE):
    """TinyAE whose process ends abruptly (``os._exit``) when trained with ``die_seed``."""

    Config = DyingConfig

    def fit(self, train, options, *, seed=0, checkpoint=None, progress=True):
        if seed == self.config.die_seed:
            os._exit(1)
        return super().fit(train, options, seed=seed, checkpoint=checkpoint, progress=progress)


@hookimpl
def register_methods(register):
    register(MethodSpec(name="dying-test", target=Dying, description="its worker dies for one seed (tests)",
                        supervision="unsupervised"))
