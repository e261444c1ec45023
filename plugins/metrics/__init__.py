"""Built-in metric plugins. Specs are cheap; each metric module is imported only when used.

Keys and their directions are declared here, once; the harness rejects a metric that returns an
undeclared key, and the contract tests run every registered metric."""
from __future__ import annotations

from disentbench import MetricSpec, hookimpl

LORD_PAPER = "Gabbay & Hoshen, ICLR 2020"

METRICS: list[MetricSpec] = [
    MetricSpec(
        name="transfer_error",
        target="disentbench_plugins.metrics.transfer:TransferError",
        description="Ground-truth content transfer on held-out classes (LORD Table 1 protocol): pixel MSE "
                    "and SSIM between G(class of x_i, content of x_j) and the true image",
        keys={"mse": "min", "ssim": "max", "n_pairs": "info"},
        requires=("factors",),
        paper=LORD_PAPER,
    ),
    MetricSpec(
        name="leakage",
        target="disentbench_plugins.metrics.leakage:Leakage",
        description="MLP accuracy predicting the class from content codes and the content factors from "
                    "class codes (LORD Table 2), with chance level",
        keys={"class_from_content": "min", "chance_class": "info",
              "content_from_class": "min", "chance_content": "info"},
        requires=("codes",),
        paper=LORD_PAPER,
    ),
    MetricSpec(
        name="reconstruction",
        target="disentbench_plugins.metrics.reconstruction:Reconstruction",
        description="Pixel MSE of decode(encode(x)) on held-out images",
        keys={"mse": "min"},
        requires=("codes",),
    ),
]


@hookimpl
def register_metrics(register):
    for spec in METRICS:
        register(spec)
