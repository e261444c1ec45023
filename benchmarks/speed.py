"""Training and evaluation speed of every registered method, and what each speed option buys.

    python benchmarks/speed.py                          # all methods, quick settings, CPU
    python benchmarks/speed.py --methods lord --scale paper --device cuda --options all
    python -m disentbench_benchmarks.speed --json speed.json

For each method: the real training step (the shared loop's code path) on random images of the
method's resolution, timed after warm-up steps; FLOPs per image (torch.utils.flop_counter);
achieved FLOP/s and its fraction of the device's measured fp32 matmul peak (MFU); peak memory; and
each option set as a ratio to the same method with all options off, measured in this one run.
With ``--eval`` also the evaluation throughput of each metric on synth3d. Prints a table and
writes JSON. ``--scale NAME`` applies the settings of the plain suite NAME (``quick``, ``cpu``) at its
first dataset's resolution, as ``disentbench run --scale`` does; ``paper`` the methods' defaults at 64 px.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

OPTION_SETS = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "fp16": {"precision": "fp16"},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "all": {"precision": "bf16", "channels_last": True, "compile": True},
}


def matmul_peak(device: Any, dtype: Any, n: int = 2048, repeat: int = 5) -> float:
    """Measured FLOP/s of a large square matmul: the reference for MFU."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n**3 * repeat / (time.perf_counter() - t0)


def random_split(resolution: int, n_classes: int, per_class: int, channels: int = 3, seed: int = 0):
    """Random uint8 images with class labels and 2 factors: speed does not depend on content."""
    import numpy as np

    from disentbench.contracts import Split

    rng = np.random.default_rng(seed)
    n = n_classes * per_class
    images = rng.integers(0, 256, size=(n, resolution, resolution, channels), dtype=np.uint8)
    classes = np.repeat(np.arange(n_classes), per_class)
    factors = np.stack([np.tile(np.arange(per_class), n_classes) % 12, np.zeros(n, dtype=np.int64)], 1)
    return Split(images, classes, factors, ("azimuth", "elevation"), (12, max(1, per_class // 12) or 1))


def peak_memory_mb(device: Any) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_method(name: str, regs: Any, *, scale: str, device: Any, options: list[str], steps: int,
                   warmup: int, stages: list[int], overrides: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    import torch

    from disentbench import config as cfg
    from disentbench.contracts import DataInfo
    from disentbench.training import Trainer, TrainOptions
    from disentbench.weights import WeightStore

    spec = regs.methods.get(name)
    suite = None if scale == "paper" else regs.suites.get(scale).load()
    settings = cfg.merge(suite.settings if suite else {}, overrides or {})
    dataset = suite.datasets[0] if suite and suite.datasets else "synth3d"
    resolution = int(settings.get(dataset, {}).get("resolution", 64))
    config = spec.configure(settings.get(name, {}))
    batch = max(int(getattr(config, "batch_size", 64)), 8)
    split = random_split(resolution, n_classes=max(8, batch // 4), per_class=24)
    # the scale's training options that change a step's speed (train.micro_batch, ...); its budget does not
    run_options = {k: v for k, v in settings.get("train", {}).items() if k not in ("max_images", "max_steps", "device")}
    rows = []
    for stage_index in stages:
        base: dict[str, Any] | None = None
        for option in options:
            torch.manual_seed(0)
            try:
                method = spec.build(settings.get(name, {}), DataInfo.from_split(split, weights=WeightStore(regs.weights)))
                if stage_index >= len(method.stages(split)):
                    break
                train = cfg.build(TrainOptions, {**run_options, "device": str(device), **OPTION_SETS[option]},
                                  where="train")
                trainer = Trainer(method, split, train)
                result = trainer.time_steps(stage_index, steps=steps, warmup=warmup)
                row = {"method": name, "stage": method.stages(split)[stage_index].name, "option": option,
                       "resolution": resolution, **result, "peak_memory_mb": peak_memory_mb(device)}
            except Exception as exc:  # an option the device or method does not support
                rows.append({"method": name, "stage": stage_index, "option": option,
                             "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"})
                continue
            if base is None:
                base = row
            row["flops_per_image"] = base["flops_per_image"]  # the same math; compiled code cannot be counted
            row["speedup"] = row["images_per_second"] / base["images_per_second"]
            row["achieved_flops"] = row["flops_per_image"] * row["images_per_second"]
            rows.append(row)
    return rows


def measure_eval(regs: Any, name: str, device: Any) -> list[dict[str, Any]]:
    """Seconds and images/s of every registered metric on a small synth3d evaluation."""
    import tempfile

    import torch

    from disentbench.contracts import DataInfo
    from disentbench.evaluation import EvalContext, EvalOptions
    from disentbench.runner import evaluate_metric
    from disentbench.training import TrainOptions
    from disentbench.weights import WeightStore
    from disentbench_plugins.datasets.synth3d import Synth3D, Synth3DConfig

    settings = regs.suites.get("quick").load().settings
    with tempfile.TemporaryDirectory() as tmp:
        data = Synth3D(Synth3DConfig(**settings.get("synth3d", {}))).load(Path(tmp), Path(tmp), progress=False)
        store = WeightStore(regs.weights)
        method = regs.methods.get(name).build(settings.get(name, {}), DataInfo.from_split(data.train, weights=store))
        method.fit(data.train, TrainOptions(device=str(device), max_steps=2), progress=False)
        options = EvalOptions(n_pairs=256, max_codes=1024)
        ctx = EvalContext(method, data, device=device, seed=0, options=options, cache_dir=Path(tmp) / "eval",
                          weights=store)
        rows = []
        for spec in regs.metrics:
            metric_options = settings.get(spec.name, {})
            entry = evaluate_metric(spec, metric_options, ctx, regs)
            rows.append({"metric": spec.name, "status": entry["status"], "seconds": entry["seconds"],
                         "images_per_second": options.n_pairs / entry["seconds"] if entry["status"] == "ok" else None,
                         "reason": (entry["reason"] or "")[:100]})
        return rows


def main(argv: list[str] | None = None) -> int:
    import torch
    from tabulate import tabulate

    from disentbench import config as cfg
    from disentbench.plugins import load_registries
    from disentbench.training import resolve_device

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="all")
    parser.add_argument("--scale", default="quick", help="paper, or a plain suite whose settings to apply (quick, cpu)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--options", default="fp32,bf16,channels_last,compile,all",
                        help=f"comma-separated option sets among {', '.join(OPTION_SETS)}; the first is the baseline")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--stages", default="0", help="stage indices to time, e.g. 0,1 (LORD's latent and encoder stages)")
    parser.add_argument("--eval", action="store_true", help="also time every metric on synth3d")
    parser.add_argument("--json", default="speed.json", help="where to write the results")
    parser.add_argument("--set", action="append", default=[], metavar="NAME.FIELD=VALUE",
                        help="method options over the scale's, as in `disentbench run` (e.g. lord.recon_loss=l1 "
                             "where the VGG weights for the perceptual loss are missing)")
    args = parser.parse_args(argv)

    regs = load_registries()
    device = resolve_device(args.device)
    options = [o.strip() for o in args.options.split(",") if o.strip()]
    unknown = [o for o in options if o not in OPTION_SETS]
    if unknown:
        parser.error(f"unknown option set(s) {unknown}; choose from {list(OPTION_SETS)}")
    if "fp32" in options:
        options.remove("fp32")
    options.insert(0, "fp32")  # the baseline comes first
    peak32 = matmul_peak(device, torch.float32)
    peak16 = matmul_peak(device, torch.bfloat16) if device.type == "cuda" else None
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"{torch.get_num_threads()} threads; measured matmul peak fp32 {peak32 / 1e9:.1f} GFLOP/s"
          + (f", bf16 {peak16 / 1e12:.1f} TFLOP/s" if peak16 else ""), flush=True)
    rows = []
    for spec in regs.methods.resolve(args.methods):
        rows += measure_method(spec.name, regs, scale=args.scale, device=device, options=options,
                               steps=args.steps, warmup=args.warmup, stages=[int(s) for s in args.stages.split(",")],
                               overrides=cfg.parse_sets(args.set))
    table = []
    for r in rows:
        if "error" in r:
            table.append([r["method"], r["stage"], r["option"], "", "", "", "", "", "", r["error"]])
            continue
        peak = peak16 if (peak16 and r["option"] in ("bf16", "fp16", "all")) else peak32
        r["mfu"] = r["achieved_flops"] / peak
        table.append([r["method"], r["stage"], r["option"], f"{r['images_per_second']:.1f}",
                      f"{r['flops_per_image'] / 1e6:.1f}", f"{r['achieved_flops'] / 1e9:.1f}",
                      f"{100 * r['mfu']:.1f}", f"{r['speedup']:.2f}", f"{r['peak_memory_mb']:.0f}", ""])
    print(tabulate(table, headers=["method", "stage", "options", "img/s", "MFLOP/img", "GFLOP/s", "MFU %",
                                   "× fp32", "peak MB", "note"], tablefmt="github"))
    evaluation = []
    if args.eval:
        evaluation = measure_eval(regs, regs.methods.names()[0] if "lord" not in regs.methods else "lord", device)
        print()
        print(tabulate([[e["metric"], e["status"], f"{e['seconds']:.2f}",
                         f"{e['images_per_second']:.0f}" if e["images_per_second"] else "", e["reason"]]
                        for e in evaluation], headers=["metric", "status", "s", "img/s", "reason"], tablefmt="github"))
    out = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "threads": torch.get_num_threads(), "scale": args.scale, "matmul_peak_fp32": peak32,
           "matmul_peak_bf16": peak16, "training": rows, "evaluation": evaluation}
    Path(args.json).write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"\nwritten {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
