"""Results as data: the small files of published runs, merged from many machines, checked for drift.

``results/<collection>/<dataset>/<method>/seed<k>-<hash>/`` holds, for every run behind a
published table, the files that say what was run and what it measured (:data:`RESULT_FILES`;
never ``state.pt`` or checkpoints). ``results/pages.json`` lists the pages rendered from them (the
run tables of ``leaderboard/README.md``, each paper suite's page with the arguments it was
rendered with), so ``disentbench leaderboard --publish`` rebuilds every committed page from the
repository alone.

- :func:`import_runs` validates records from other stores (schema, provenance) and adds them:
  duplicates are skipped, a conflicting record for one run id is reported and never merged.
- :func:`compare` matches two result sets run by run and metric by metric, with a tolerance per
  metric, and says what moved (an upgrade of torch, lpips or scikit-learn that changes a number).
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from disentbench.numbers import fmt
from disentbench.store import RECORD, RECORD_SCHEMA, atomic_write_bytes, atomic_write_json, read_records

#: What a published run keeps: its record and the files a reader needs to audit it.
RESULT_FILES = ("record.json", "config.json", "metrics.json", "env.json", "train_summary.json", "train_log.jsonl",
                "transfer.png")
PAGES = "pages.json"
#: Keys of a record that are measurements (compared for duplicates and conflicts); the rest
#: (timings, environment, paths) legitimately differ between two executions of one run.
MEASURED = ("status", "config_hash", "config", "seed", "metrics")


class ResultsError(ValueError):
    """A record cannot be published: invalid schema, missing provenance, or a conflict."""


def provenance_problems(record: dict[str, Any]) -> list[str]:
    """What a record lacks to be traced back: schema keys, project commit (with its dirty flag),
    library versions, hardware, dataset checksums (of a finished run: a failed one may have failed
    before its data was loaded)."""
    problems = [f"missing key {k!r}" for k in RECORD_SCHEMA if k not in record]
    env = record.get("env") or {}
    if not env.get("disentbench_git"):
        problems.append("no project commit (env.disentbench_git): run from a git checkout of disentbench")
    if not env.get("libraries"):
        problems.append("no library versions (env.libraries)")
    if not (env.get("device_name") and env.get("device")):
        problems.append("no hardware (env.device, env.device_name)")
    data = record.get("data") or {}
    if record.get("status") == "finished" and not (data.get("cache_key") or data.get("checksums")):
        problems.append("no dataset checksum (data.cache_key or data.checksums)")
    if record.get("status") not in ("finished", "failed"):
        problems.append(f"status {record.get('status')!r} is not 'finished' or 'failed'")
    return problems


def _measured(record: dict[str, Any]) -> str:
    return json.dumps({k: record.get(k) for k in MEASURED}, sort_keys=True, default=str)


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.conflicts or self.invalid)

    def lines(self) -> list[str]:
        out = [f"{len(self.added)} added, {len(self.duplicates)} already there, {len(self.conflicts)} conflicting, "
               f"{len(self.invalid)} invalid"]
        out += [f"conflict: {c}" for c in self.conflicts] + [f"invalid: {i}" for i in self.invalid]
        return out


def import_runs(sources: Iterable[Path], dest: Path, *, run_ids: Iterable[str] | None = None,
                finished_only: bool = False) -> ImportReport:
    """Copy the :data:`RESULT_FILES` of every valid run under ``sources`` into ``dest`` (same
    layout), failed runs included (a run that diverged or learned nothing is a result too) unless
    ``finished_only``. A run already in ``dest`` with the same measurements is skipped; one with different
    measurements is a conflict, reported and left as it is."""
    dest = Path(dest)
    wanted = None if run_ids is None else set(run_ids)
    report = ImportReport()
    for record in read_records([Path(s) for s in sources]):
        run_id = record.get("run_id") or "?"
        if wanted is not None and run_id not in wanted:
            continue
        if finished_only and record.get("status") != "finished":
            continue
        source = Path(record.pop("_dir"))
        problems = provenance_problems(record)
        if problems:
            report.invalid.append(f"{source}: {'; '.join(problems)}")
            continue
        target = dest / run_id
        existing = target / RECORD
        if existing.is_file():
            try:
                old = json.loads(existing.read_text())
            except (OSError, ValueError) as exc:
                report.conflicts.append(f"{run_id}: the record in {target} cannot be read ({exc})")
                continue
            if _measured(old) == _measured(record):
                report.duplicates.append(run_id)
            else:
                report.conflicts.append(f"{run_id}: {source} measured differently from {target} ({_difference(old, record)})")
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in RESULT_FILES[1:]:
            if (source / name).is_file():
                atomic_write_bytes(target / name, (source / name).read_bytes())
        atomic_write_json(existing, record)  # written last: a record means the run's files are all there
        report.added.append(run_id)
    return report


def _difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = [k for k in MEASURED if json.dumps(a.get(k), sort_keys=True, default=str)
            != json.dumps(b.get(k), sort_keys=True, default=str)]
    return "differs in " + ", ".join(keys)


# -- pages -----------------------------------------------------------------------------------

def read_pages(root: Path) -> list[dict[str, Any]]:
    path = Path(root) / PAGES
    if not path.is_file():
        return []
    try:
        pages = json.loads(path.read_text())["pages"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ResultsError(f"{path} is not a pages list ({exc}); restore it from git") from None
    return list(pages)


def add_page(root: Path, page: dict[str, Any]) -> None:
    """Record (or replace) how a page is rendered: ``{"page": "README.md", "collections": [...]}``,
    a named plain suite's ``{"page": "cpu.md", "collections": ["cpu"], "claims": "cpu"}`` (its claims
    checked on the page) or ``{"suite": NAME, "scale": ..., "collections": [...], "set": [...], ...}``."""
    root = Path(root)
    key = page.get("suite") or page.get("page")
    pages = [p for p in read_pages(root) if (p.get("suite") or p.get("page")) != key]
    if page.get("page") == "README.md":
        old = next((p for p in read_pages(root) if p.get("page") == "README.md"), None)
        if old:  # the run tables gather every collection published to them
            page = {**page, "collections": sorted(set(old.get("collections", [])) | set(page["collections"]))}
    pages.append(page)
    pages.sort(key=lambda p: (p.get("suite") is not None, p.get("suite") or p.get("page")))
    atomic_write_json(root / PAGES, {"pages": pages})


# -- drift checks ----------------------------------------------------------------------------

@dataclass
class Tolerance:
    atol: float = 1e-4
    rtol: float = 1e-3
    per_metric: dict[str, float] = field(default_factory=dict)  # "metric" or "metric.key" -> absolute tolerance

    def of(self, column: str, reference: float) -> float:
        metric = column.split(".")[0]
        if column in self.per_metric:
            return self.per_metric[column]
        if metric in self.per_metric:
            return self.per_metric[metric]
        return self.atol + self.rtol * abs(reference)


@dataclass
class Drift:
    run_id: str
    column: str
    a: Any
    b: Any
    tolerance: float | None
    moved: bool


def _values(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for metric, entry in (record.get("metrics") or {}).items():
        if entry.get("status") != "ok":
            out[f"{metric}"] = f"{entry.get('status')}"
            continue
        for key, value in (entry.get("values") or {}).items():
            out[f"{metric}.{key}"] = value
    return out


def compare(a: Iterable[Path], b: Iterable[Path], tolerance: Tolerance | None = None
            ) -> tuple[list[Drift], list[str], list[str]]:
    """(every compared value, run ids only in A, run ids only in B). A value moved when it is
    numeric on both sides and differs by more than its tolerance, or when a status or an
    availability differs (a metric computed on one side and unavailable on the other)."""
    tolerance = tolerance or Tolerance()
    ra = {r["run_id"]: r for r in read_records([Path(p) for p in a])}
    rb = {r["run_id"]: r for r in read_records([Path(p) for p in b])}
    drifts: list[Drift] = []
    for run_id in sorted(set(ra) & set(rb)):
        x, y = ra[run_id], rb[run_id]
        if x.get("status") != y.get("status"):
            drifts.append(Drift(run_id, "status", x.get("status"), y.get("status"), None, True))
            continue
        va, vb = _values(x), _values(y)
        for column in sorted(set(va) | set(vb)):
            p, q = va.get(column), vb.get(column)
            if isinstance(p, (int, float)) and isinstance(q, (int, float)) and p is not None and q is not None:
                tol = tolerance.of(column, float(p))
                both_nan = math.isnan(p) and math.isnan(q)
                moved = not both_nan and not abs(float(p) - float(q)) <= tol
                drifts.append(Drift(run_id, column, p, q, tol, moved))
            else:
                drifts.append(Drift(run_id, column, p, q, None, p != q))
    return drifts, sorted(set(ra) - set(rb)), sorted(set(rb) - set(ra))


def drift_table(drifts: list[Drift], *, all_rows: bool = False) -> str:
    from tabulate import tabulate


    def show(v: Any) -> str:
        return fmt(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)

    rows = [[d.run_id, d.column, show(d.a), show(d.b),
             show(float(d.b) - float(d.a)) if isinstance(d.a, (int, float)) and isinstance(d.b, (int, float)) else "",
             "" if d.tolerance is None else f"{d.tolerance:.2g}", "MOVED" if d.moved else "ok"]
            for d in drifts if all_rows or d.moved]
    return tabulate(rows, headers=["run", "metric", "A", "B", "B − A", "tolerance", ""], tablefmt="github",
                    disable_numparse=True)


def copy_tree_files(source: Path, dest: Path) -> None:
    """Copy a folder (grids, plots) file by file, creating ``dest``."""
    for path in Path(source).rglob("*"):
        if path.is_file():
            target = Path(dest) / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
