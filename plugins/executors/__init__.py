"""Built-in executors: where the cells of a sweep run. Specs are cheap; each executor module (and
its engine: ray, submitit) is imported only when chosen with ``--executor``."""
from __future__ import annotations

from disentbench import CommandLineOption, ExecutorSpec, hookimpl

EXECUTORS: list[ExecutorSpec] = [
    ExecutorSpec(
        name="local",
        target="disentbench_plugins.executors.local:LocalExecutor",
        description="This machine: cells one after another, or in --jobs N processes (CPU threads "
                    "divided between them, one GPU per worker)",
        options=(CommandLineOption("--jobs", "jobs", "run this many cells at once in worker processes", type=int),),
    ),
    ExecutorSpec(
        name="ray",
        target="disentbench_plugins.executors.ray_cluster:RayExecutor",
        description="Each cell a Ray task with its CPU/GPU request; joins --ray-address or starts a local Ray",
        requires=("package:ray",),
        options=(CommandLineOption("--ray-address", "address",
                                   "join this cluster (HOST:PORT or auto) instead of a local Ray"),),
    ),
    ExecutorSpec(
        name="slurm",
        target="disentbench_plugins.executors.slurm:SlurmExecutor",
        description="Each cell a Slurm array task through submitit; checkpoints every N steps, and a "
                    "preempted or requeued job resumes from its last checkpoint",
        requires=("package:submitit",),
    ),
]


@hookimpl
def register_executors(register):
    for spec in EXECUTORS:
        register(spec)
