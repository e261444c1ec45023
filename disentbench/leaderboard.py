"""Leaderboards: a pure function from run records to markdown (pandas for the grouping,
tabulate for GitHub tables). One table per dataset, one row per method (and configuration),
mean ± std over seeds, ↑/↓ per metric, the best value in bold, n/a with the reason in the notes.
:func:`write_section` writes one generated part of a page that several writers share."""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from tabulate import tabulate

from disentbench import claims as claimsmod
from disentbench.numbers import fmt
from disentbench.specs import ARROWS
from disentbench.store import atomic_write_bytes

INTRO = (
    "Mean ± std over seeds (std shown when there is more than one seed). ↑: higher is better, "
    "↓: lower is better; the best value of each column is in **bold**. `n/a [k]`: the metric could "
    "not be computed, for the reason in note k. `failed [k]`: a run of that row failed (its loss "
    "diverged, its generator collapsed, or it crashed), for the reason in note k; no value of that row is "
    "shown. Every number links back to a run directory through "
    "its record (`record.json`: config, seed, versions, metrics)."
)


# Codes whose class/content split a method chose with the class labels (β-VAE, FactorVAE record it
# in ``method_info.latent_split``): a leakage score on them is partly chosen, not only measured.
LABEL_SPLIT_NOTE = (
    "class and content dimensions chosen after training with the class labels of the training split "
    "(`method_info.latent_split`: the dimensions the class label explains best, η²), the split leakage is "
    "scored on: its leakage is partly selected, not comparable with codes separated by construction"
)


def label_split(record: dict[str, Any]) -> bool:
    """Whether a run's class/content codes were split with the class labels (see LABEL_SPLIT_NOTE)."""
    info = (record.get("method_info") or {}).get("latent_split")
    return isinstance(info, dict) and bool(info.get("fitted", True))


def baseline_keys(key: str) -> dict[str, str]:
    """The "info" keys that give a ranked key its reference points, by the naming convention of the
    metric specs: ``chance_<first word>`` and ``majority_<first word>`` (``chance_class`` for
    ``class_from_content``, ``chance_error`` for ``error``) and ``floor_<key>`` (a perfectly
    disentangled reference code scored the same way)."""
    head = key.split("_")[0]
    return {f"chance_{head}": "chance", f"majority_{head}": "majority", f"floor_{key}": "floor"}


def _rows(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Long format: one row per (run, metric key) with the value, status and note."""
    rows = []
    for r in records:
        if r.get("status") != "finished":
            continue
        base = {"dataset": r["dataset"], "method": r["method"], "config_hash": r["config_hash"],
                "seed": r["seed"], "supervision": r.get("supervision") or "", "run_dir": r.get("_dir", ""),
                "label_split": label_split(r),
                "train_seconds": (r.get("timings") or {}).get("train_seconds"),
                "images_per_second": (r.get("timings") or {}).get("images_per_second"),
                "images_seen": (r.get("timings") or {}).get("images_seen")}
        for metric, entry in sorted((r.get("metrics") or {}).items()):
            for pos, (key, direction) in enumerate(entry.get("directions", {}).items()):
                value = entry.get("values", {}).get(key) if entry.get("status") == "ok" else None
                rows.append({**base, "column": f"{metric}.{key}", "key_pos": pos, "direction": direction,
                             "value": value, "status": entry.get("status"),
                             "reason": entry.get("reason"), "notes": entry.get("notes") or ""})
    return pd.DataFrame(rows)


class Footnotes:
    """Numbered notes: ``ref(text)`` gives a text's number, the same text keeps its number."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def ref(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


def _failed_groups(failed: Iterable[dict[str, Any]], dataset: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """A dataset's failed records by (method, config hash)."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in failed:
        if r.get("dataset") == dataset:
            out.setdefault((r["method"], r["config_hash"]), []).append(r)
    return out


def _failure_note(method: str, runs: list[dict[str, Any]], n_seeds: int) -> str:
    """Why a row is shown as failed: each failed seed with its error's first line."""
    why = []
    for r in sorted(runs, key=lambda r: r.get("seed", 0)):
        err = r.get("error") or {}
        message = str(err.get("message") or "").strip()
        why.append(f"seed {r.get('seed')}: {err.get('type', 'error')}: {message.splitlines()[0][:300] if message else ''}")
    return f"{method} failed on {len(runs)} of {n_seeds} seed(s), so no value of the row is shown: {'; '.join(why)}"


def _label(method: str, config_hash: str, several: bool, differs: str = "") -> str:
    if not several:
        return method
    return f"{method} (cfg {config_hash[:6]}: {differs})" if differs else f"{method} (cfg {config_hash[:6]})"


def _differing_options(records: Iterable[dict[str, Any]], dataset: str) -> dict[tuple[str, str], str]:
    """For each (method, config hash) of a dataset's table, the method options whose values differ
    between that method's configurations ("variant=adversarial"), so ablation rows say what they are."""
    configs: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        if r.get("status") in ("finished", "failed") and r.get("dataset") == dataset:
            options = {k: v for k, v in ((r.get("config") or {}).get("method") or {}).items() if k != "name"}
            configs.setdefault(r["method"], {})[r["config_hash"]] = options
    out = {}
    for method, by_hash in configs.items():
        keys = sorted({k for o in by_hash.values() for k in o})
        varying = [k for k in keys if len({repr(o.get(k)) for o in by_hash.values()}) > 1]
        for chash, options in by_hash.items():
            out[(method, chash)] = ", ".join(f"{k}={options.get(k)}" for k in varying)
    return out


BUDGET_TOLERANCE = 0.02  # rows within 2% of the table's median images seen trained on the same budget


def _budget_notes(stats: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str]] | None:
    """Images seen in training per row, and a note on every row whose budget differs from the
    table's median by more than :data:`BUDGET_TOLERANCE` (rounding to whole batches stays within
    it); None when no record of the table says (records from before ``timings.images_seen``)."""
    seen = {key: s["images_seen"] for key, s in stats.items()
            if "failed" not in s and s.get("images_seen") == s.get("images_seen") and s.get("images_seen") is not None}
    if not seen:
        return None
    return budget_cells(seen, float(pd.Series(list(seen.values())).median()))


def budget_cells(seen: dict[Any, float | None], reference: float) -> dict[Any, tuple[str, str]]:
    """Per key with a value: (images seen, a note where it is more than :data:`BUDGET_TOLERANCE`
    off ``reference``, the table's median budget, else ""). Shared by run tables and paper pages."""
    out = {}
    for key, value in seen.items():
        if value is None:
            continue
        note = ""
        if abs(value - reference) > BUDGET_TOLERANCE * reference:
            note = (f"unequal training budget: {fmt(value)} images seen, against the table's median of "
                    f"{fmt(reference)}; its ranking is confounded with the amount of training")
        out[key] = (fmt(value), note)
    return out


def render(records: list[dict[str, Any]], *, grids: dict[tuple[str, str, str], str] | None = None,
           title: str = "disentbench leaderboard", cost: bool = True,
           curves: dict[tuple[str, str, str], str] | None = None, plots: dict[str, str] | None = None,
           claims: list[Any] | None = None, links: list[tuple[str, str]] | None = None) -> str:
    """Markdown for ``records``. ``grids`` and ``curves`` map (dataset, method, config_hash) to a
    relative link of that row's transfer grid and training curves; ``plots`` maps a dataset to its
    trade-off plot and ``"DATASET:budget"`` to its budget curve. ``claims`` (a suite's
    :class:`~disentbench.claims.Claim` list) are checked against ``records`` and shown first;
    ``links`` are (title, relative link) of other pages, listed under the intro."""
    grids, curves, plots = grids or {}, curves or {}, plots or {}
    lines = [f"# {title}", "", INTRO, ""]
    if links:
        lines += ["Other pages: " + " · ".join(f"[{name}]({link})" for name, link in links), ""]
    lines += claimsmod.render(claimsmod.judge(claims or [], records))
    df = _rows(records)
    failed = [r for r in records if r.get("status") == "failed"]
    if df.empty:
        lines += ["No finished runs yet.", ""]
    notes = Footnotes()
    datasets = set(df["dataset"].unique()) if not df.empty else set()
    for dataset in sorted(datasets | {r["dataset"] for r in failed}):
        d = df[df["dataset"] == dataset] if not df.empty else pd.DataFrame(
            columns=["column", "key_pos", "direction", "method", "config_hash", "seed"])
        # metrics alphabetically, each metric's keys in the order its spec declares them
        columns = sorted(dict.fromkeys(d["column"]), key=lambda col: (col.split(".")[0], d.loc[d["column"] == col, "key_pos"].iloc[0]))
        directions = d.groupby("column")["direction"].first().to_dict()
        groups = d.groupby(["method", "config_hash"], sort=True)
        stats: dict[tuple[str, str], dict[str, Any]] = {}
        for (method, chash), g in groups:
            row: dict[str, Any] = {"supervision": g["supervision"].iloc[0], "seeds": g["seed"].nunique(),
                                   "label_split": bool(g["label_split"].any())}
            per_seed = g.drop_duplicates(["seed"])
            row["train_seconds"] = per_seed["train_seconds"].astype(float).mean()
            row["images_per_second"] = per_seed["images_per_second"].astype(float).mean()
            row["images_seen"] = per_seed["images_seen"].astype(float).mean()
            for col in columns:
                c = g[g["column"] == col]
                vals = c["value"].dropna().astype(float)
                if len(vals):
                    note_text = "; ".join(sorted({n for n in c["notes"] if n}))
                    row[col] = (vals.mean(), vals.std(ddof=1) if len(vals) > 1 else None, note_text)
                elif len(c):
                    reason = next((x for x in c["reason"] if x), None) or "not computed"
                    row[col] = (None, None, f"{col.split('.')[0]}: {reason}")
            stats[(method, chash)] = row
        # a row with a failed run shows no number: a mean over the seeds that survived would hide it
        for (method, chash), runs in _failed_groups(failed, dataset).items():
            done = d[(d["method"] == method) & (d["config_hash"] == chash)]
            n_seeds = len(set(done["seed"]) | {r.get("seed") for r in runs})
            supervision = runs[0].get("supervision") or (done["supervision"].iloc[0] if len(done) else "")
            stats[(method, chash)] = {"supervision": supervision, "seeds": n_seeds, "train_seconds": float("nan"),
                                      "images_per_second": float("nan"), "failed": _failure_note(method, runs, n_seeds)}
        stats = dict(sorted(stats.items()))
        configs_per_method = pd.Series([m for m, _ in stats]).value_counts().to_dict()
        best: dict[str, float] = {}
        for col in columns:
            direction = directions[col]
            means = [s[col][0] for s in stats.values() if col in s and s[col][0] is not None]
            if direction in ("max", "min") and len(means) > 1:
                best[col] = max(means) if direction == "max" else min(means)
        # keep the table readable: a metric that no row could compute becomes one line under the
        # table, and an "info" key with one value for every row (a chance level, a pair count) too
        below: list[str] = []
        for metric in dict.fromkeys(col.split(".")[0] for col in columns):
            cols = [col for col in columns if col.split(".")[0] == metric]
            live = [s for s in stats.values() if "failed" not in s]
            if live and all(s.get(col, (None,))[0] is None for s in live for col in cols):
                reasons = sorted({s[col][2] for s in live for col in cols if col in s})
                below.append(f"not measured: {'; '.join(reasons)}")
                columns = [col for col in columns if col not in cols]
        shared: dict[str, str] = {}
        for col in columns:
            values = [s[col][0] if col in s else None for s in stats.values() if "failed" not in s]
            if directions[col] == "info" and None not in values and len({fmt(v) for v in values}) == 1:
                shared[col] = fmt(values[0])
        # a ranked column's chance/majority/floor (e.g. leakage.chance_class for class_from_content)
        # go on a line of their own beside it
        references = []
        for col in columns:
            metric, key = col.split(".", 1)
            refs = [(word, shared.pop(f"{metric}.{k}")) for k, word in baseline_keys(key).items()
                    if directions[col] != "info" and f"{metric}.{k}" in shared]
            if refs:
                floor = " (floor: a perfectly disentangled reference code on the same split)" if any(
                    w == "floor" for w, _ in refs) else ""
                references.append(f"{col}: " + ", ".join(f"{w} {v}" for w, v in refs) + floor)
                columns = [c for c in columns if c not in {f"{metric}.{k}" for k in baseline_keys(key)}]
        if shared:
            below.insert(0, "the same for every row: " + ", ".join(f"{c} = {v}" for c, v in shared.items()))
            columns = [col for col in columns if col not in shared]
        below[:0] = references
        budget = _budget_notes(stats)
        headers = ["method", "supervision", "seeds"] + (["images seen"] if budget is not None else [])
        headers += [f"{c} {ARROWS[directions[c]]}".rstrip() for c in columns]
        if not columns:  # only failed runs: a status column says so
            headers.append("status")
        if cost:
            headers += ["train s", "img/s"]
        headers.append("transfer grid")
        table = []
        differs = _differing_options(records, dataset)
        for (method, chash), s in stats.items():
            cells = [_label(method, chash, configs_per_method[method] > 1, differs.get((method, chash), "")),
                     s["supervision"], str(s["seeds"])]
            if budget is not None:
                seen, note = budget.get((method, chash), ("", ""))
                cells.append(f"{seen} [{notes.ref(note)}]" if note else seen)
            if "failed" in s:
                mark = f"failed [{notes.ref(s['failed'])}]"
                cells += [mark] * max(1, len(columns)) + (["", ""] if cost else []) + [""]
                table.append(cells)
                continue
            if not columns:
                cells.append("")
            for col in columns:
                if col not in s:
                    cells.append("")
                    continue
                mean, std, note = s[col]
                if mean is None:
                    cells.append(f"n/a [{notes.ref(note)}]")
                    continue
                text = fmt(mean) + (f" ± {fmt(std)}" if std is not None else "")
                if col in best and math.isclose(mean, best[col], rel_tol=1e-12, abs_tol=1e-12):
                    text = f"**{text}**"
                marks = [note] if note else []
                if s["label_split"] and col.split(".")[0] == "leakage":
                    marks.append(LABEL_SPLIT_NOTE)
                if marks:
                    text += " " + "".join(f"[{notes.ref(m)}]" for m in marks)
                cells.append(text)
            if cost:
                cells += [fmt(s["train_seconds"]) if s["train_seconds"] == s["train_seconds"] else "",
                          fmt(s["images_per_second"]) if s["images_per_second"] == s["images_per_second"] else ""]
            links = [f"[{name}]({link})" for name, link in (("grid", grids.get((dataset, method, chash))),
                                                            ("curves", curves.get((dataset, method, chash)))) if link]
            cells.append(" · ".join(links))
            table.append(cells)
        lines += [f"## {dataset}", "", tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
        if dataset in plots:
            lines += [f"![{dataset}: transfer error against class ← content leakage]({plots[dataset]})", ""]
        if f"{dataset}:budget" in plots:
            lines += [f"![{dataset}: scores against images seen]({plots[f'{dataset}:budget']})", ""]
        lines += [f"- {text}" for text in below] + ([""] if below else [])
    if notes.texts:
        lines += ["### Notes", ""]
        lines += [f"{k}. {text}" for k, text in enumerate(notes.texts, 1)]
        lines.append("")
    if failed:
        lines += ["### Failed runs", ""]
        for r in sorted(failed, key=lambda r: r.get("run_id", "")):
            err = r.get("error") or {}
            message = str(err.get("message", "")).splitlines()[0][:300] if err.get("message") else ""
            lines.append(f"- `{r.get('run_id')}`: {err.get('type', 'error')}: {message}")
        lines.append("")
    return "\n".join(lines)


SECTIONS = ("runs", "paper-tables")  # the order of the generated parts of a leaderboard README.md


def write_section(path: Path, key: str, text: str) -> Path:
    """Replace generated part ``key`` of the markdown page ``path``, keeping the others.

    ``leaderboard/README.md`` holds two generated parts: the per-dataset run tables (``disentbench
    run`` / ``leaderboard``) and the index of paper tables (``--suite``). Each writer owns the part
    between its ``<!-- disentbench:KEY -->`` markers; text outside every marker is kept above them."""
    path = Path(path)
    try:
        old = path.read_text()
    except OSError:
        old = ""
    parts: dict[str, str] = {}
    preamble = old
    for name in SECTIONS:
        start, end = f"<!-- disentbench:{name} -->", f"<!-- /disentbench:{name} -->"
        if start in preamble and end in preamble.split(start, 1)[1]:
            before, rest = preamble.split(start, 1)
            body, after = rest.split(end, 1)
            parts[name] = body.strip("\n")
            preamble = before + after
    parts[key] = text.strip("\n")
    blocks = [preamble.strip("\n")] if preamble.strip() else []
    blocks += [f"<!-- disentbench:{n} -->\n{parts[n]}\n<!-- /disentbench:{n} -->" for n in SECTIONS if n in parts]
    atomic_write_bytes(path, ("\n\n".join(blocks) + "\n").encode())
    return path


def write(records: list[dict[str, Any]], out_dir: Path, *, name: str = "README.md",
          title: str = "disentbench leaderboard", claims: list[Any] | None = None,
          links: list[tuple[str, str]] | None = None) -> Path:
    """Copy each row's transfer grid (lowest seed) into ``out_dir/grids``, plot its training
    curves into ``out_dir/curves`` and each dataset's trade-off into ``out_dir/plots``, and write
    the markdown."""
    from disentbench import plots as plotting

    out_dir = Path(out_dir)
    (out_dir / "grids").mkdir(parents=True, exist_ok=True)
    grids: dict[tuple[str, str, str], str] = {}
    curves: dict[tuple[str, str, str], str] = {}
    for r in sorted(records, key=lambda r: r.get("seed", 0)):
        key = (r.get("dataset"), r.get("method"), r.get("config_hash"))
        if r.get("status") != "finished" or key in grids or key in curves:
            continue
        stem = f"{key[0]}-{key[1]}-{key[2][:6]}.png"
        src = Path(r.get("_dir", "")) / (r.get("artifacts") or {}).get("transfer_grid", "transfer.png")
        if src.is_file():
            shutil.copyfile(src, out_dir / "grids" / stem)
            grids[key] = f"grids/{stem}"
        caption = f"{key[0]} / {key[1]} (cfg {key[2][:6]}, seed {r.get('seed')})"
        if plotting.curves_plot(plotting.read_log(Path(r.get("_dir", ""))), caption, out_dir / "curves" / stem):
            curves[key] = f"curves/{stem}"
    plots = {}
    page = "" if name == "README.md" else f"{Path(name).stem}-"  # pages sharing out_dir keep their own plots
    for dataset in sorted({r.get("dataset") for r in records if r.get("status") == "finished"}):
        if plotting.tradeoff_plot(records, dataset, out_dir / "plots" / f"{page}{dataset}-tradeoff.png"):
            plots[dataset] = f"plots/{page}{dataset}-tradeoff.png"
        if plotting.budget_plot(records, dataset, out_dir / "plots" / f"{page}{dataset}-budget.png"):
            plots[f"{dataset}:budget"] = f"plots/{page}{dataset}-budget.png"
    text = render(records, grids=grids, title=title, curves=curves, plots=plots, claims=claims, links=links)
    if name == "README.md":  # shared with the paper-table index: replace only the run tables
        return write_section(out_dir / name, "runs", text)
    atomic_write_bytes(out_dir / name, text.encode())
    return out_dir / name
