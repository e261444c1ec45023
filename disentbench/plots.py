"""Pictures beside the tables (matplotlib, Agg): per dataset, transfer error against leakage, one
point per method with its seed spread and the chance/floor levels marked; per dataset, where a
method was trained at several budgets, its scores against images seen (the budget curve); per run,
the training curves of every logged loss term. Small PNGs, deterministic for a given matplotlib
version."""
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
#: the scores of the budget curve, each (metric, key, label, its chance key or None)
BUDGET_KEYS = (("swap", "content_accuracy", "swap: content accuracy", "chance_content"),
               ("swap", "class_accuracy", "swap: class accuracy", "chance_class"),
               ("swap", "copy_rate", "swap: copy rate", "chance_copy"),
               ("leakage", "class_from_content", "leakage: class ← content", "chance_class"),
               ("leakage", "content_from_class", "leakage: content ← class", "chance_content"))
PNG_METADATA = {"Software": None}  # no version string in the file: the same plot gives the same bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` (deterministic bytes: no version metadata) and close it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata=PNG_METADATA)
    plt.close(fig)
    return path


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
    return _save(plt, fig, path)


def budget_points(records: Iterable[dict[str, Any]], dataset: str) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per method of ``dataset`` trained at two or more budgets (distinct ``timings.images_seen`` of
    finished runs): per score of :data:`BUDGET_KEYS`, the (images seen, value) points, sorted."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        seen = (r.get("timings") or {}).get("images_seen")
        if r.get("status") == "finished" and r.get("dataset") == dataset and seen:
            runs.setdefault(r["method"], []).append(r)
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for method, rs in sorted(runs.items()):
        if len({r["timings"]["images_seen"] for r in rs}) < 2:
            continue
        for metric, key, label, _ in BUDGET_KEYS:
            pts = sorted((float(r["timings"]["images_seen"]), v) for r in rs if (v := _value(r, metric, key)) is not None)
            if pts:
                out.setdefault(method, {})[label] = pts
    return out


def budget_plot(records: Iterable[dict[str, Any]], dataset: str, path: Path) -> Path | None:
    """The budget curve of ``dataset``: for each method trained at several budgets, one panel per
    score (swap accuracies, copy rate, leakage) against images seen (log scale), every seed a
    point and the mean a line, with the chance level dashed. None when no method has two budgets."""
    records = list(records)
    points = budget_points(records, dataset)
    if not points:
        return None
    labels = [label for _, _, label, _ in BUDGET_KEYS if any(label in p for p in points.values())]
    chance: dict[str, float] = {}
    for metric, key, label, chance_key in BUDGET_KEYS:
        values = [v for r in records if r.get("dataset") == dataset and chance_key
                  and (v := _value(r, metric, chance_key)) is not None]
        if values:
            chance[label] = float(np.mean(values))
    plt = _pyplot()
    cols = min(3, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows), dpi=80, squeeze=False)
    for ax, label in zip(axes.flat, labels):
        for method, series in points.items():
            if label not in series:
                continue
            a = np.array(series[label])
            xs = np.unique(a[:, 0])
            means = [a[a[:, 0] == x, 1].mean() for x in xs]
            line, = ax.plot(xs, means, marker="o", markersize=3, linewidth=1, label=method)
            ax.scatter(a[:, 0], a[:, 1], s=6, color=line.get_color())
        if label in chance:
            ax.axhline(chance[label], color="grey", linestyle="--", linewidth=0.8, label="chance")
        ax.set_xscale("log")
        budgets = sorted({x for series in points.values() for x, _ in series.get(label, [])})
        ax.set_xticks(budgets, [f"{x / 1000:.0f}k" for x in budgets])
        ax.minorticks_off()
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("images seen", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    fig.suptitle(f"{dataset}: scores against the training budget", fontsize=9)
    return _save(plt, fig, path)


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
    return _save(plt, fig, path)
