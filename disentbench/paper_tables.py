"""Paper tables: a paper suite's runs rendered in the paper's own layout, beside its numbers.

Each cell is ``measured ± std (published) Δ relative difference``, where measured is the mean
over seeds of the column's metric key on the row's runs; Δ only where the cell is measured as the
paper measured it (its scale and settings, evaluator and data), else a footnote says why there is
none. Every cell whose evaluator, data or settings differ from the paper's carries a footnote
saying how (a reduced scale, a stand-in evaluator or dataset, the metric's own notes), a cell
that could not be measured is n/a with the reason, and a cell with a failed run (diverged, collapsed,
crashed) is ``failed`` with the reason and shows no number, not even the mean of the seeds that
survived. A last column gives each row's training
budget in images seen, footnoted where it differs from the other rows'. Under the table, Kendall's τ between the measured and published values of each
column says whether the methods rank as in the paper.

:func:`render` is a pure function of the suite, its plan and run records (tested against expected
text); :func:`write` and :func:`write_index` put ``<out>/NAME.md`` and ``<out>/README.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from disentbench.leaderboard import LABEL_SPLIT_NOTE, Footnotes, baseline_keys, budget_cells, label_split, write_section
from disentbench.numbers import fmt
from disentbench.specs import ARROWS
from disentbench.store import atomic_write_bytes
from disentbench.suites import METHOD_INFO, PAPER_SCALE, Column, Published, Row, Suite, SuitePlan, TableCellPlan

MARKER = "<!-- disentbench paper table: {name} scale={scale} -->"
NO_DELTA = "no Δ against the published numbers (Kendall τ still compares the ranking)"
NO_DELTA_DATA = "no Δ against the published numbers, and left out of Kendall τ"
INDEX_TITLE = "## Paper tables"
#: error types of runs that measured nothing because an input is missing here (n/a, not "failed")
MISSING_INPUTS = ("DataMissing", "WeightsUnavailable")


@dataclass
class MetricInfo:
    """What the renderer needs to know about the metrics: ``directions`` maps "name.key" to
    "max"/"min"/"info"; ``descriptions`` maps a metric name to its one-line description."""

    directions: dict[str, str]
    descriptions: dict[str, str]

    @classmethod
    def from_registries(cls, regs: Any) -> "MetricInfo":
        directions = {f"{spec.name}.{key}": d for spec in regs.metrics for key, d in spec.keys.items()}
        return cls(directions, {spec.name: spec.description for spec in regs.metrics})


@dataclass
class Measured:
    """One cell's measurement (or why there is none) and its footnote texts."""

    mean: float | None = None
    std: float | None = None
    values: tuple[float, ...] = ()
    notes: tuple[str, ...] = ()
    reason: str = ""  # why there is no number
    stand_in: bool = False
    references: tuple[str, ...] = ()  # the runs' chance/majority/floor of the cell's metric key
    fallback: str = ""  # the stand-in evaluator ("name.key") that measured it, if not the column's own
    failed: bool = False  # a run of the cell failed: shown as "failed", never as a number


class _Notes(Footnotes):
    def marks(self, texts: Iterable[str]) -> str:
        refs = sorted({self.ref(t) for t in texts if t})
        return "".join(f"[{k}]" for k in refs)


def _by_run_id(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        run_id = r.get("run_id")
        if run_id and (run_id not in out or r.get("status") == "finished"):
            out[run_id] = r
    return out


def _first_line(text: Any) -> str:
    return str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""


def _value(record: dict[str, Any], ref: str) -> tuple[float | None, str, str]:
    """(value, metric notes, reason) of "name.key" in a finished record."""
    name, key = ref.split(".", 1)
    if name == METHOD_INFO:
        value: Any = record.get(METHOD_INFO) or {}
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None, "", f"the method recorded no finite number at {ref} in run {record.get('run_id')}"
        return float(value), "", ""
    entry = (record.get("metrics") or {}).get(name)
    if entry is None:
        return None, "", f"{name} was not computed in run {record.get('run_id')}"
    if entry.get("status") != "ok":
        return None, "", f"{name}: {entry.get('reason') or entry.get('status')}"
    value = (entry.get("values") or {}).get(key)
    if value is None:
        return None, "", f"{name} gave no finite {key!r}"
    return float(value), str(entry.get("notes") or ""), ""


def references(record: dict[str, Any], ref: str, info: MetricInfo) -> str:
    """A ranked cell's reference points in its run: chance/majority/floor (e.g. leakage.chance_class
    for leakage.class_from_content), as "chance 0.1, floor 0.1"; "" when the metric has none."""
    name, key = ref.split(".", 1)
    if info.directions.get(ref, "info") == "info":
        return ""
    values = ((record.get("metrics") or {}).get(name) or {}).get("values") or {}
    return ", ".join(f"{word} {fmt(float(values[k]))}" for k, word in baseline_keys(key).items()
                     if values.get(k) is not None)


def _chosen_runs(tc: TableCellPlan, records: dict[str, dict[str, Any]]) -> tuple[list[Any] | None, bool]:
    """The runs whose records measure a cell: on the column's dataset if any has a record, else
    on its stand-in; and whether they are the stand-in's."""
    for runs, is_stand_in in ((tc.runs, False), (tc.stand_in_runs, True)):
        if runs and any(c.run_id in records for c in runs):
            return runs, is_stand_in
    return None, False


def primary_missing(row: Row, tc: TableCellPlan, ref: str, records: dict[str, dict[str, Any]]) -> str:
    """Why ``ref`` has no value in some finished record of the cell ("" if it has one in all)."""
    chosen, _ = _chosen_runs(tc, records)
    for run in chosen or []:
        record = records.get(run.run_id)
        if record is not None and record.get("status") == "finished":
            value, _, reason = _value(record, ref)
            if value is None:
                return reason
    return ""


def measure(row: Row, col: Column, tc: TableCellPlan, records: dict[str, dict[str, Any]],
            info: MetricInfo, suite_name: str, scale: str, *, column_fallback: str = "") -> Measured:
    """The measurement of one table cell from the records of its runs (the column's own dataset
    first, else its stand-in), with the fallback metric where the primary is unavailable.
    ``column_fallback`` (a reason) makes the cell use the fallback even where the primary is
    there, so that one column compares one evaluator."""
    if tc.skipped:
        return Measured(reason=tc.skipped)
    chosen, stand_in = _chosen_runs(tc, records)
    if chosen is None:
        if tc.data_missing and not tc.stand_in_runs:
            return Measured(reason=f"data not available here: {tc.data_missing}")
        if tc.data_missing:
            return Measured(reason=f"data not available here: {tc.data_missing} (its stand-in "
                                   f"{col.stand_in!r} was not run either: add --stand-ins)")
        return Measured(reason=f"not run yet: `disentbench run --suite {suite_name} --scale {scale}`")
    failed = [(c.seed, records[c.run_id]) for c in chosen
              if c.run_id in records and records[c.run_id].get("status") != "finished"]
    missing = [(seed, r) for seed, r in failed if (r.get("error") or {}).get("type") in MISSING_INPUTS]
    if missing and len(missing) == len(failed):  # nothing was measured: the data or weights are not here
        seed, r = missing[0]
        return Measured(reason=f"not available here: {_first_line((r.get('error') or {}).get('message'))}",
                        stand_in=stand_in)
    if failed:
        why = "; ".join(f"{(r.get('error') or {}).get('type', 'error')}: "
                        f"{_first_line((r.get('error') or {}).get('message'))} (seed {seed})" for seed, r in failed)
        return Measured(reason=f"run failed: {why}; {len(failed)} of {len(chosen)} planned seeds failed, so no "
                               "value is shown", stand_in=stand_in, failed=True)
    ref = row.metric_for(col)
    values: list[float] = []
    notes: list[str] = []
    refs: list[str] = []
    reasons: list[str] = []
    fallback = ""
    for run in chosen:
        record = records.get(run.run_id)
        if record is None:
            continue
        if record.get("status") != "finished":
            err = record.get("error") or {}
            reasons.append(f"run failed: {err.get('type', 'error')}: {_first_line(err.get('message'))}")
            continue
        value, note, reason = _value(record, ref)
        used = ref
        if column_fallback and col.fallback and ref == col.metric:
            value, reason = None, column_fallback
        if value is None and col.fallback and ref == col.metric:
            fb_value, fb_note, fb_reason = _value(record, col.fallback)
            if fb_value is not None:
                used = fallback = col.fallback
                fb_name = col.fallback.split(".")[0]
                notes.append(f"evaluator differs: {reason}; measured instead with {fb_name} "
                             f"({info.descriptions.get(fb_name, col.fallback)}); {NO_DELTA}")
                value, note = fb_value, fb_note
            else:
                reason = f"{reason}; fallback {fb_reason}"
        if value is None:
            reasons.append(reason)
            continue
        values.append(value)
        if note:
            notes.append(f"{used.split('.')[0]}: {note}")
        refs.append(references(record, used, info))
        if used.split(".")[0] == "leakage" and label_split(record):
            notes.append(f"{row.label}: {LABEL_SPLIT_NOTE}")
    if not values:
        return Measured(reason=reasons[0] if reasons else "no record of this cell's runs", stand_in=stand_in)
    if len(values) < len(chosen):
        notes.append(f"{len(values)} of {len(chosen)} planned seeds have a value"
                     + (f" ({reasons[0]})" if reasons else ""))
    if stand_in:
        notes.append(f"data differs: measured on {chosen[0].dataset!r}, a stand-in for {col.dataset!r}, which is not "
                     f"available here ({_first_line(tc.data_missing)}); not comparable with the published value: "
                     f"{NO_DELTA_DATA}")
    mean = sum(values) / len(values)
    std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None)
    return Measured(mean, std, tuple(values), tuple(dict.fromkeys(notes)), stand_in=stand_in, fallback=fallback,
                    references=tuple(dict.fromkeys(r for r in refs if r)))


def column_fallbacks(suite: Suite, plan: SuitePlan, records: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Columns with a fallback whose primary metric is missing for some row: column key -> the
    reason. Every row of such a column is then measured with the fallback."""
    out = {}
    for col in suite.columns:
        if not col.fallback:
            continue
        for row in suite.rows:
            if row.reference or row.metric_for(col) != col.metric:
                continue
            reason = primary_missing(row, plan.cells[(row.key, col.key)], col.metric, records)
            if reason:
                out[col.key] = f"{reason} (for {row.label}; one evaluator serves the whole column)"
                break
    return out


def relative_difference(measured: float, published: Published) -> str:
    """Δ = (measured − published) / |published| as a signed percentage; a bound that the
    measurement satisfies is "within bound"."""
    if published.value is None:
        return ""
    if published.bound == "<" and measured < published.value or published.bound == ">" and measured > published.value:
        return "within bound"
    if published.value == 0:
        return "Δ n/a (published 0)"
    percent = round(100 * (measured - published.value) / abs(published.value))
    return f"Δ {percent:+d}%"


def not_comparable(plan: SuitePlan, m: Measured) -> str:
    """Why a measured cell is not on the published number's scale ("" if it is): a scale other than
    the paper's, settings changed on the command line, a stand-in evaluator or stand-in data. Such
    a cell gets no Δ (its ranking still enters Kendall's τ); the notes that say how it differs say so."""
    why = []
    if plan.scale != PAPER_SCALE:
        why.append(f"measured at the {plan.scale} scale, not with the paper's settings")
    if changed_settings(plan):
        why.append("settings changed on the command line")
    if m.fallback:
        why.append(f"measured with the stand-in evaluator {m.fallback.split('.')[0]}, not the paper's")
    if m.stand_in:
        why.append("measured on stand-in data")
    return "; ".join(why)


def images_seen(row: Row, suite: Suite, plan: SuitePlan, records: dict[str, dict[str, Any]]) -> float | None:
    """Mean training images seen (``timings.images_seen``) over the finished records of a row's
    cells, each run once; None when no record says."""
    seen: dict[str, float] = {}
    for col in suite.columns:
        chosen, _ = _chosen_runs(plan.cells[(row.key, col.key)], records)
        for run in chosen or []:
            record = records.get(run.run_id) or {}
            value = (record.get("timings") or {}).get("images_seen") if record.get("status") == "finished" else None
            if value is not None:
                seen[run.run_id] = float(value)
    return sum(seen.values()) / len(seen) if seen else None


def suite_row(suite: Suite, key: str) -> Row:
    return next(row for row in suite.rows if row.key == key)


def budget_column(suite: Suite, plan: SuitePlan, records: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]] | None:
    """Per row: images seen in training and, where it differs from the median of the ranked rows by
    more than the leaderboard's tolerance, a note saying so; None when no record gives images seen."""

    seen = {row.key: images_seen(row, suite, plan, records) for row in suite.rows if not row.reference}
    known = sorted(v for k, v in seen.items() if v is not None and suite_row(suite, k).rank)  # not "chance" rows
    if not known:
        return None
    mid = len(known) // 2
    median = known[mid] if len(known) % 2 else (known[mid - 1] + known[mid]) / 2
    return budget_cells(seen, median)


def kendall_tau(measured: list[float], published: list[float]) -> float | None:
    """Kendall's τ-b (scipy) between measured and published values; None when undefined."""
    from scipy.stats import kendalltau

    if len(measured) < 2:
        return None
    tau = kendalltau(published, measured).statistic
    return None if tau is None or not math.isfinite(float(tau)) else float(tau)


def scale_note(suite: Suite, plan: SuitePlan) -> str:
    """The footnote every measured cell carries when the scale is not the paper's."""
    if plan.scale == PAPER_SCALE:
        if len(plan.seeds) < len(suite.seeds):
            return f"{len(plan.seeds)} seed(s) instead of the suite's {len(suite.seeds)}"
        return ""
    sc = suite.scale(plan.scale)
    seeds = f"{len(plan.seeds)} seed(s)" + (f" instead of {len(suite.seeds)}" if len(plan.seeds) != len(suite.seeds) else "")
    text = f"settings differ: {plan.scale} scale"
    if sc.description:
        text += f" ({sc.description})"
    return f"{text}; {seeds}. Not the paper's settings, so not comparable in absolute value: {NO_DELTA}"


def changed_settings(plan: SuitePlan) -> list[str]:
    """The command line's ``--set`` values that change what a planned run computes (``scope.key=value``;
    see :attr:`SuitePlan.changed_settings`, worked out once per plan)."""
    return list(plan.changed_settings)


def overrides_note(plan: SuitePlan) -> str:
    """The footnote of every measured cell when settings were changed on the command line."""
    changed = changed_settings(plan)
    return f"settings differ: set on the command line: {', '.join(changed)}; {NO_DELTA}" if changed else ""


def render(suite: Suite, plan: SuitePlan, records: list[dict[str, Any]], info: MetricInfo) -> str:
    """The paper table of ``suite`` as markdown (see the module docstring)."""
    by_id = _by_run_id(records)
    notes = _Notes()
    cit = suite.citation
    general = [t for t in (scale_note(suite, plan), overrides_note(plan),
                           f"protocol differs: {suite.note}" if suite.note else "") if t]
    lines = [MARKER.format(name=suite.name, scale=plan.scale), f"# {suite.name}: {cit.get('table')} of {cit.get('paper')}",
             ""]
    source = f" (published numbers typed in from `{cit['source']}`)" if cit.get("source") else ""
    caption = f": {cit['caption']}" if cit.get("caption") else ""
    lines += [f"{cit.get('table')}{caption}{source}.", ""]
    if suite.description:
        lines += [suite.description, ""]
    lines += [f"Scale: **{plan.scale}**; seeds {', '.join(map(str, plan.seeds))}. Each cell: measured mean ± std "
              "over seeds (the paper's number) and, only where the cell is measured as the paper measured it (its "
              "settings, evaluator and data), Δ = (measured − published) / published. `n/a`: not measured, "
              "for the reason in its note; `failed`: a run of the cell failed, for the reason in its note; `—`: a row the paper reports that disentbench does not run. "
              "↑/↓: higher/lower is better.", ""]
    headers = ["method"] + [f"{c.heading} {ARROWS.get(info.directions.get(c.metric, 'info'), '')}".rstrip()
                            for c in suite.columns]
    budget = budget_column(suite, plan, by_id)
    if budget is not None:
        headers.append("images seen")
    table: list[list[str]] = []
    measured: dict[tuple[str, str], Measured] = {}
    forced = column_fallbacks(suite, plan, by_id)
    for row in suite.rows:
        cells = [row.label]
        for col in suite.columns:
            m = measure(row, col, plan.cells[(row.key, col.key)], by_id, info, suite.name, plan.scale,
                        column_fallback=forced.get(col.key, ""))
            measured[(row.key, col.key)] = m
            pub = row.published[col.key]
            cell_notes = []
            if m.mean is None:
                text = ("—" if row.reference else "failed" if m.failed else "n/a") + f" ({pub.text})"
                cell_notes.append(m.reason)
            else:
                text = fmt(m.mean) + (f" ± {fmt(m.std)}" if m.std is not None else "") + f" ({pub.text})"
                why_not = not_comparable(plan, m) if pub.comparable else ""
                delta = "" if why_not else relative_difference(m.mean, pub)
                if delta:
                    text += f" {delta}"
                cell_notes += [*general, *m.notes]
                if col.note:
                    cell_notes.append(f"protocol differs ({col.heading}): {col.note}")
                if row.note:
                    cell_notes.append(f"{row.label}: {row.note}")
                if pub.missing:
                    cell_notes.append(f"no published number: {pub.missing}")
            marks = notes.marks(cell_notes)
            cells.append(f"{text} {marks}".rstrip())
        if budget is not None:
            seen, note = budget.get(row.key, ("—" if row.reference else "", ""))
            cells.append(f"{seen} {notes.marks([note])}".rstrip())
        table.append(cells)
    tau_cells, agree, comparable = ["Kendall τ vs paper"], 0, 0
    for col in suite.columns:
        ranked = [r for r in suite.rows if r.rank and not r.reference and measured[(r.key, col.key)].mean is not None
                  and r.published[col.key].comparable]
        pairs = [(measured[(r.key, col.key)].mean, r.published[col.key].value) for r in ranked
                 if not measured[(r.key, col.key)].stand_in]
        tau = kendall_tau([p[0] for p in pairs], [p[1] for p in pairs])
        if tau is None:
            why = "stand-in data" if ranked and not pairs else f"{len(pairs)} measured row{'s' if len(pairs) != 1 else ''}"
            tau_cells.append(f"n/a ({why})")
            continue
        comparable += 1
        agree += tau == 1.0
        tau_cells.append(f"{tau:.2f} ({len(pairs)} rows)" + (", agrees" if tau == 1.0 else ""))
    if budget is not None:
        tau_cells.append("")
    table.append(tau_cells)
    from tabulate import tabulate

    lines += [tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
    reference_lines = []
    for col in suite.columns:
        texts = dict.fromkeys(t for row in suite.rows for t in measured[(row.key, col.key)].references)
        if texts:
            floor = " (floor: a perfectly disentangled reference code on the same split)" if any(
                "floor" in t for t in texts) else ""
            reference_lines.append(f"- {col.heading}: {'; '.join(texts)}{floor}")
    if reference_lines:
        lines += ["Reference points of the measured runs (chance: 1 / number of labels; majority: share of the "
                  "most frequent label scored):", "", *reference_lines, ""]
    if comparable:
        lines += [f"Ranking: the methods rank exactly as in the paper (τ = 1) in {agree} of {comparable} column(s) "
                  "with at least two measured, ranked rows on the paper's data.", ""]
    else:
        lines += ["Ranking: no column has two measured, ranked rows on the paper's data yet, so the ranking "
                  "cannot be compared.", ""]
    if notes.texts:
        lines += ["### Notes", ""]
        lines += [f"{k}. {text}" for k, text in enumerate(notes.texts, 1)]
        lines.append("")
    return "\n".join(lines)


def gaps(suite: Suite, plan: SuitePlan, records: list[dict[str, Any]], info: MetricInfo) -> list[dict[str, Any]]:
    """Every measured cell with a published number: row, column, measured, published, relative gap
    (None where the cell is not comparable with the published value, and ``not_comparable`` says why)."""
    by_id = _by_run_id(records)
    forced = column_fallbacks(suite, plan, by_id)
    out = []
    for row in suite.rows:
        for col in suite.columns:
            m = measure(row, col, plan.cells[(row.key, col.key)], by_id, info, suite.name, plan.scale,
                        column_fallback=forced.get(col.key, ""))
            pub = row.published[col.key]
            if m.mean is None or pub.value is None:
                continue
            why_not = not_comparable(plan, m)
            rel = (m.mean - pub.value) / abs(pub.value) if pub.value and not why_not else None
            out.append({"row": row.label, "column": col.heading, "measured": m.mean, "std": m.std,
                        "published": pub.text, "relative": rel, "not_comparable": why_not, "stand_in": m.stand_in,
                        "notes": list(m.notes)})
    return out


def write(suite: Suite, plan: SuitePlan, records: list[dict[str, Any]], info: MetricInfo, out_dir: Path) -> Path:
    """Write ``<out_dir>/<suite>.md`` (atomically)."""
    path = Path(out_dir) / f"{suite.name}.md"
    atomic_write_bytes(path, render(suite, plan, records, info).encode())
    return path


def page_scale(path: Path) -> str | None:
    """The scale a rendered page was made at (from its first line), or None if it is not one."""
    try:
        first = Path(path).read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    prefix = MARKER.split("{name}")[0]
    if not first.startswith(prefix) or "scale=" not in first:
        return None
    return first.split("scale=", 1)[1].split()[0]


def render_index(suites: list[Suite], out_dir: Path) -> str:
    """Markdown listing every paper suite, linking the pages rendered in ``out_dir``."""
    lines = [INDEX_TITLE, "",
             "Every table of the seed papers is a suite in `benchmarks/` (`disentbench list suites`). "
             "`disentbench run --suite NAME --scale quick|paper` trains and evaluates it and writes `NAME.md` here: "
             "the table in the paper's layout, measured ± std beside the published numbers, the relative "
             "difference, whether the methods rank as in the paper (Kendall τ), and a footnote on every cell "
             "whose evaluator, data or settings differ from the paper's. `disentbench leaderboard --suite NAME` "
             "re-renders a page from the runs.", ""]
    rows = []
    for suite in sorted(suites, key=lambda s: s.name):
        if not suite.is_paper_table:
            continue
        page = Path(out_dir) / f"{suite.name}.md"
        scale = page_scale(page) if page.is_file() else None
        link = f"[{suite.name}]({suite.name}.md)" if scale else f"`{suite.name}`"
        cit = suite.citation
        rows.append([link, str(cit.get("paper", "")), str(cit.get("table", "")), str(cit.get("caption", "")),
                     scale or "not rendered yet"])
    from tabulate import tabulate

    lines += [tabulate(rows, headers=["suite", "paper", "table", "what", "rendered at scale"], tablefmt="github",
                       disable_numparse=True), ""]
    return "\n".join(lines)


def write_index(suites: list[Suite], out_dir: Path) -> Path:
    """The index as the paper-tables part of ``out_dir/README.md`` (the run tables stay)."""
    return write_section(Path(out_dir) / "README.md", "paper-tables", render_index(suites, out_dir))
