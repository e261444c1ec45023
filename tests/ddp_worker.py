"""Run by tests/test_scaling.py under torchrun (2 processes, gloo) and directly (1 process): trains
TinyAE (or TwoOptimizers, whose encoder and decoder have optimizers of their own, stepped by separate
updates as GAN-style methods do, or Chunked, whose step is computed in chunks) on tiny synth3d and saves the final parameters from rank 0, with
how many DistributedDataParallel wrappers the training built."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from conftest import TINY  # noqa: E402
from disentbench.contracts import DataInfo  # noqa: E402
from disentbench.training import TrainOptions, init_distributed_from_env  # noqa: E402
from disentbench_plugins.datasets.synth3d import Synth3D, Synth3DConfig  # noqa: E402
from disentbench.training import Stage  # noqa: E402
from testplugins import TinyAE, TinyAEConfig  # noqa: E402

BUILT = []  # every DistributedDataParallel constructed in this process
_init = torch.nn.parallel.DistributedDataParallel.__init__


def _counting_init(self, *args, **kwargs):
    BUILT.append(1)
    _init(self, *args, **kwargs)


torch.nn.parallel.DistributedDataParallel.__init__ = _counting_init


class TwoOptimizers(TinyAE):
    """Two updates per step with two optimizers: the decoder first (encoder frozen by its own
    optimizer not stepping), then the encoder on a fresh forward pass."""

    def stages(self, train):
        def step(batch, ctx):
            loss = (self.decode(*self.encode(batch.images)) - batch.images).pow(2).mean()
            ctx.update(loss, "dec")
            again = (self.decode(*self.encode(batch.images)) - batch.images).abs().mean()
            ctx.update(again, "enc")
            return {"loss": loss.detach()}

        return [Stage("ae", self.config.epochs, self.config.batch_size, step,
                      lambda: {"enc": torch.optim.Adam(self.enc.parameters(), self.config.lr),
                               "dec": torch.optim.SGD(self.dec.parameters(), 0.1)})]


class Chunked(TinyAE):
    """TinyAE's loss computed in chunks of train.micro_batch images (StepContext.update_chunks):
    with data parallelism the gradient is all-reduced once, in the last chunk's backward."""

    def stages(self, train):
        def step(batch, ctx):
            x = batch.images
            terms = ctx.update_chunks(len(x), lambda s: {"loss": (self.decode(*self.encode(x[s])) - x[s]).pow(2).mean()})
            return {**terms, "chunks": float(len(ctx.chunks(len(x))))}

        return [Stage("ae", self.config.epochs, self.config.batch_size, step,
                      lambda: {"adam": torch.optim.Adam(self.parameters(), self.config.lr)})]


def main(out: str, batch_size: int, cache: str, method_name: str = "tinyae") -> None:
    rank, world = init_distributed_from_env()
    torch.set_num_threads(1)
    data = Synth3D(Synth3DConfig(**TINY["synth3d"])).load(Path(cache), Path(cache), progress=False)
    torch.manual_seed(0)
    cls = {"tinyae": TinyAE, "two-optimizers": TwoOptimizers, "chunked": Chunked}[method_name]
    method = cls(TinyAEConfig(epochs=3, batch_size=batch_size), DataInfo.from_split(data.train))
    options = TrainOptions(micro_batch=4 if method_name == "chunked" else 0)
    result = method.fit(data.train, options, seed=0, progress=False)
    if rank == 0:
        torch.save({"state": method.state_dict(), "losses": [r["loss"] for r in result.log],
                    "world": world, "images": result.images, "ddp_wrappers": len(BUILT),
                    "chunks": [r.get("chunks", 1.0) for r in result.log]}, out)
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], *sys.argv[4:])
