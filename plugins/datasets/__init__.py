"""Built-in dataset plugins. Specs are cheap; each dataset module is imported only when used."""
from __future__ import annotations

from disentbench import DatasetSpec, hookimpl

DATASETS = [
    DatasetSpec(
        name="synth3d",
        target="disentbench_plugins.datasets.synth3d:Synth3D",
        description="Procedurally rendered 3-D objects (coloured ellipsoid composites) under azimuth × "
                    "elevation; exact ground truth, generated offline in seconds; held-out test classes",
        factors=("azimuth", "elevation"),
        source="generated",
    ),
]


@hookimpl
def register_datasets(register):
    for spec in DATASETS:
        register(spec)
