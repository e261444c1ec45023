"""A third-party executor that adds its own flag to ``disentbench run`` (``--echo-tag``, setting its
``tag`` option), with no change to the core: loaded with ``DISENTBENCH_PLUGINS=executorplugin``.
It runs nothing; it remembers the config it was built with and the cells it was given."""
from __future__ import annotations

from dataclasses import dataclass

from disentbench import CommandLineOption, ExecutorSpec, hookimpl

SEEN: list[tuple["EchoConfig", list]] = []


@dataclass
class EchoConfig:
    tag: str = ""
    max_cells: int = 100


class EchoExecutor:
    Config = EchoConfig

    def __init__(self, config: EchoConfig) -> None:
        self.config = config

    def run(self, cells, report=None):
        SEEN.append((self.config, list(cells)))
        return []


@hookimpl
def register_executors(register):
    register(ExecutorSpec(
        name="echo-test", target=EchoExecutor, description="remembers what it was given",
        options=(CommandLineOption("--echo-tag", "tag", "label every cell with this tag", metavar="TAG"),
                 CommandLineOption("--echo-max-cells", "max_cells", "stop after this many cells", type=int)),
    ))
