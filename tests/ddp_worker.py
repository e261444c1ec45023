"""Run by tests/test_scaling.py under torchrun (2 processes, gloo) and directly (1 process): trains
TinyAE on tiny synth3d and saves the final parameters from rank 0."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from conftest import TINY  # noqa: E402
from disentbench.contracts import DataInfo  # noqa: E402
from disentbench.training import TrainOptions, init_distributed_from_env  # noqa: E402
from disentbench_plugins.datasets.synth3d import Synth3D, Synth3DConfig  # noqa: E402
from testplugins import TinyAE, TinyAEConfig  # noqa: E402


def main(out: str, batch_size: int, cache: str) -> None:
    rank, world = init_distributed_from_env()
    torch.set_num_threads(1)
    data = Synth3D(Synth3DConfig(**TINY["synth3d"])).load(Path(cache), Path(cache), progress=False)
    torch.manual_seed(0)
    method = TinyAE(TinyAEConfig(epochs=3, batch_size=batch_size), DataInfo.from_split(data.train))
    result = method.fit(data.train, TrainOptions(), seed=0, progress=False)
    if rank == 0:
        torch.save({"state": method.state_dict(), "losses": [r["loss"] for r in result.log],
                    "world": world, "images": result.images}, out)
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
