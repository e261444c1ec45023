"""Pictures beside the tables (matplotlib, Agg): per dataset, transfer error against leakage, one
point per method with its seed spread and the chance/floor levels marked; per run, the training
curves of every logged loss term. Small PNGs, deterministic for a given matplotlib version."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

#: (x, y) of the trade-off plot: transfer error (lower is better) against class←content leakage
TRADEOFF_X = ("transfer_error", "mse")
TRADEOFF_Y = ("leakage", "class_from_content")
#: leakage values drawn as horizontal reference lines when a run records them
REFERENCE_LINES = {"chance_class": ("chance", ":"), "floor_class_from_content": ("perfect-code floor", "--"),
                   "majority_class": ("majority class", "-.")}
PNG_METADATA = {"Software": None}  # no version string in the file: the same plot gives the same bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _value(record: dict[str, Any], metric: str, key: str) -> float | None:
    entry = (record.get("metrics") or {}).get(metric) or {}
    if entry.get("status") != "ok":
        return None
    value = (entry.get("values") or {}).get(key)
    return None if value is None or not math.isfinite(float(value)) else float(value)


def tradeoff_plot(records: Iterable[dict[str, Any]], dataset: str, path: Path) -> Path | None:
    """Transfer error (x) against class←content leakage (y) for the finished runs of ``dataset``:
    mean per (method, config) with min–max bars over seeds. None when no run has both values."""
    points: dict[str, list[tuple[float, float]]] = {}
    references: dict[str, list[float]] = {}
    for r in records:
        if r.get("status") != "finished" or r.get("dataset") != dataset:
            continue
        x, y = _value(r, *TRADEOFF_X), _value(r, *TRADEOFF_Y)
        if x is None or y is None:
            continue
        points.setdefault(f"{r['method']} {r['config_hash'][:6]}", []).append((x, y))
        for key in REFERENCE_LINES:
            v = _value(r, TRADEOFF_Y[0], key)
            if v is not None:
                references.setdefault(key, []).append(v)
    if not points:
        return None
    several = len({label.split()[0] for label in points}) < len(points)  # one method in several configs
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=80)
    for label, xy in sorted(points.items()):
        a = np.array(xy)
        mx, my = a.mean(0)
        ax.errorbar(mx, my, xerr=[[mx - a[:, 0].min()], [a[:, 0].max() - mx]],
                    yerr=[[my - a[:, 1].min()], [a[:, 1].max() - my]], fmt="o", capsize=2)
        ax.annotate(label if several else label.split()[0], (mx, my), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    for key, values in references.items():
        name, style = REFERENCE_LINES[key]
        ax.axhline(float(np.mean(values)), color="grey", linestyle=style, linewidth=1, label=name)
    if references:
        ax.legend(fontsize=7, loc="best")
    ax.set_xlabel("transfer error (MSE, lower is better)")
    ax.set_ylabel("class ← content accuracy (lower is better)")
    ax.set_title(f"{dataset}: transfer error vs leakage", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata=PNG_METADATA)
    plt.close(fig)
    return path


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "train_log.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def curves_plot(log: list[dict[str, Any]], title: str, path: Path, *, max_points: int = 400) -> Path | None:
    """One small panel per logged term (per stage), against the stage's step; long logs are
    averaged over windows to ``max_points`` points. None for an empty log."""
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for row in log:
        for key, value in row.items():
            if key in ("stage", "epoch", "step") or not isinstance(value, (int, float)):
                continue
            series.setdefault((str(row.get("stage", "")), key), []).append((int(row.get("step", 0)), float(value)))
    if not series:
        return None
    plt = _pyplot()
    n = len(series)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 1.8 * rows), dpi=80, squeeze=False)
    for ax, ((stage, key), points) in zip(axes.flat, sorted(series.items())):
        a = np.array(points)
        if len(a) > max_points:
            w = math.ceil(len(a) / max_points)
            cut = len(a) // w * w
            a = a[:cut].reshape(-1, w, 2).mean(1)
        ax.plot(a[:, 0], a[:, 1], linewidth=0.8)
        ax.set_title(f"{stage}: {key}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata=PNG_METADATA)
    plt.close(fig)
    return path
