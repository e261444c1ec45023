"""Built-in method plugins. Specs are cheap; each method module is imported only when used."""
from __future__ import annotations

from disentbench import MethodSpec, hookimpl

LORD_PAPER = "Gabbay & Hoshen, Demystifying Inter-Class Disentanglement, ICLR 2020"

METHODS: list[MethodSpec] = [
    MethodSpec(
        name="lord",
        target="disentbench_plugins.methods.lord:LORD",
        description="Latent optimisation of shared class and per-image content codes with asymmetric noise, "
                    "AdaIN generator, then amortised encoders",
        supervision="class-supervised",
        paper=LORD_PAPER,
    ),
]


@hookimpl
def register_methods(register):
    for spec in METHODS:
        register(spec)
