"""Suites: named, declarative sweeps in TOML (mteb's Benchmark).

A plain suite (``benchmarks/quick.toml``) lists methods, datasets, metrics, seeds and per-plugin
settings. A *paper suite* is one published table: its ``[[columns]]`` (a dataset and a metric key
each, in the paper's order), its ``[[rows]]`` (a method with its settings, in the paper's order)
and, per row, the numbers the paper publishes; ``[citation]`` says where they come from, and
``[scales.NAME]`` shrinks the paper's settings through configuration only (``--scale quick``)::

    description = "LORD (ICLR 2020) Table 1: content-transfer LPIPS"
    seeds = [0, 1, 2]
    [citation]
    paper = "Gabbay & Hoshen, Demystifying Inter-Class Disentanglement, ICLR 2020"
    table = "Table 1"
    [scales.quick]
    settings_from = "quick"                 # start from the quick suite's small settings
    seeds = [0]
    [scales.quick.settings.train]
    max_steps = 150
    [[columns]]
    key = "cars3d"
    dataset = "cars3d"
    metric = "lpips_transfer.lpips"
    fallback = "lpips_random.lpips"         # measured instead where the primary cannot run here
    [[rows]]
    key = "lord"
    method = "lord"
    published = { cars3d = 0.078 }          # 0.078, "< 0.01", "24.6 ± 10.3", "—" (not reported)

Settings are layered, later winning: the suite's ``[settings]`` (the paper's), the chosen scale's
``settings_from`` suite and ``[scales.NAME.settings]``, a column's ``settings``, a row's
``settings`` (options of its method), then ``--config``/``--set`` from the command line.

:func:`load_suite` checks the file's structure and needs no registry; :func:`validate` checks it
against the registries (names, metric keys, options of every layer).
:func:`disentbench.runner.plan_suite` turns a suite into planned runs, one per (row, dataset,
column settings, seed), so that columns of one dataset share a run; a plain suite (and a sweep of
``--methods``/``--datasets``) is planned the same way, as a table with implicit rows and columns
(:meth:`Suite.table`).
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from disentbench.claims import Claim
from disentbench.claims import parse as parse_claims
from disentbench.config import (ConfigError, Overrides, check_scopes, check_seeds, config_of, harness_options, merge,
                                tomllib)

PLAIN_KEYS = {"name", "description", "methods", "datasets", "metrics", "seeds", "settings", "citation", "claims"}
PAPER_KEYS = (PLAIN_KEYS - {"claims"}) | {"columns", "rows", "scales", "note"}
COLUMN_KEYS = {"key", "label", "group", "dataset", "metric", "fallback", "settings", "stand_in", "note", "unavailable"}
ROW_KEYS = {"key", "label", "method", "settings", "published", "reference", "rank", "measure", "note"}
SCALE_KEYS = {"description", "settings", "seeds", "settings_from"}
PAPER_SCALE = "paper"
DEFAULT_PAPER_SEEDS = [0, 1, 2]
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
NOT_REPORTED = ("—", "–", "-", "n/r")
METHOD_INFO = "method_info"  # "method_info.PATH" reads what the method recorded about its training


@dataclass(frozen=True)
class Published:
    """A number as the paper prints it: a value, an upper or lower bound ("< 0.01"), a value with
    its spread ("24.6 ± 10.3"), or nothing ("—": not reported; "figure": only in a figure)."""

    value: float | None
    text: str
    bound: str = ""  # "<" or ">" when the paper gives a bound
    spread: float | None = None
    missing: str = ""  # why there is no number

    @property
    def comparable(self) -> bool:
        return self.value is not None


def parse_published(raw: Any, where: str) -> Published:
    """One published cell from the suite file (see :class:`Published`)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ConfigError(f"{where}: published value {raw!r} must be a number or a string such as '< 0.01', "
                          f"'24.6 ± 10.3', '—' (not reported) or 'figure'")
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw):
            raise ConfigError(f"{where}: published value {raw!r} is not finite")
        return Published(float(raw), f"{raw:g}")
    text = raw.strip()
    if text in NOT_REPORTED:
        return Published(None, "—", missing="not reported in the paper")
    if text.lower() == "figure":
        return Published(None, "fig.", missing="the paper shows this only in a figure, without numbers")
    number = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
    m = re.fullmatch(rf"([<>≤≥])\s*({number})", text)
    if m:
        bound = {"≤": "<", "≥": ">"}.get(m.group(1), m.group(1))
        return Published(float(m.group(2)), f"{bound} {m.group(2)}", bound=bound)
    m = re.fullmatch(rf"({number})\s*(?:±|\+/-|\+-)\s*({number})", text)
    if m:
        return Published(float(m.group(1)), f"{m.group(1)} ± {m.group(2)}", spread=float(m.group(2)))
    m = re.fullmatch(number, text)
    if m:
        return Published(float(text), text)
    raise ConfigError(f"{where}: cannot read published value {raw!r}; write a number (0.137), a bound ('< 0.01'), "
                      f"a value with its spread ('24.6 ± 10.3'), '—' where the paper reports none, or 'figure'")


@dataclass
class Column:
    """One column of a paper table: ``metric`` ("name.key") measured on ``dataset``; in a plain
    suite's implicit table (:meth:`Suite.table`), ``metric`` is a metric's name: all its keys."""

    key: str
    label: str
    dataset: str
    metric: str
    group: str = ""  # the paper's column group ("Cars3D" above "y ← c" and "y → c")
    fallback: str = ""  # "name.key" measured where ``metric`` is unavailable here (footnoted)
    settings: Overrides = field(default_factory=dict)  # scope -> options for this column's runs
    stand_in: str = ""  # dataset run instead where ``dataset`` is missing here (with --stand-ins)
    note: str = ""  # how this column's protocol differs from the paper's (a footnote on its cells)
    unavailable: str = ""  # why disentbench cannot measure this column at all (its cells show the paper's numbers)

    @property
    def metric_name(self) -> str:
        return self.metric.split(".", 1)[0]

    @property
    def metric_key(self) -> str:
        return self.metric.split(".", 1)[1]

    @property
    def heading(self) -> str:
        return f"{self.group}: {self.label}" if self.group else self.label


@dataclass
class Row:
    """One row of a paper table: a registered method (with its settings) or a reference row that
    disentbench does not run (``reference`` says why), and the paper's numbers by column key."""

    key: str
    label: str
    method: str | None
    published: dict[str, Published]
    settings: dict[str, Any] = field(default_factory=dict)  # options of ``method``
    reference: str = ""  # non-empty: not run, for this reason (the published values are shown)
    rank: bool = True  # take part in the ranking comparison (False for e.g. "Random chance")
    measure: dict[str, str] = field(default_factory=dict)  # column key -> "name.key" read instead
    note: str = ""

    def metric_for(self, column: Column) -> str:
        return self.measure.get(column.key, column.metric)


@dataclass
class Scale:
    """A named set of settings layered over the paper's (``--scale NAME``)."""

    name: str
    description: str = ""
    settings: Overrides = field(default_factory=dict)
    seeds: list[int] | None = None
    settings_from: str = ""  # a suite whose ``[settings]`` are layered first (e.g. "quick")


@dataclass
class Suite:
    name: str
    description: str
    methods: str | list[str]
    datasets: list[str]
    metrics: str | list[str] = "all"
    seeds: list[int] = field(default_factory=lambda: [0])
    settings: Overrides = field(default_factory=dict)
    citation: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    columns: list[Column] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    scales: dict[str, Scale] = field(default_factory=dict)
    note: str = ""  # how the whole suite's protocol differs from the paper's (footnote on every cell)
    claims: list[Claim] = field(default_factory=list)  # a plain suite's claims (disentbench.claims)

    @property
    def is_paper_table(self) -> bool:
        return bool(self.columns)

    def scale(self, name: str) -> Scale:
        """The scale ``name``; "paper" is always there (the suite's own settings)."""
        if name == PAPER_SCALE:
            return self.scales.get(PAPER_SCALE, Scale(PAPER_SCALE, "the paper's settings"))
        if name not in self.scales:
            known = sorted({PAPER_SCALE, *self.scales})
            raise ConfigError(f"suite {self.name!r} defines no scale {name!r}; it defines: {', '.join(known)}")
        return self.scales[name]

    def table(self, regs: Any) -> tuple[list[Row], list[Column]]:
        """The rows and columns this suite measures. A paper table's are its own; a plain suite is a
        table with implicit ones: a row per method and a column per dataset and metric (``metric`` is
        the metric's name: every key of it), in the order given, datasets outermost so that a sweep
        loads one dataset at a time. Every name is resolved here (unknown names: did-you-mean)."""
        if self.is_paper_table:
            return self.rows, self.columns
        methods = [spec.name for spec in regs.methods.resolve(self.methods)]
        datasets = [spec.name for spec in regs.datasets.resolve(self.datasets)]
        metrics = [spec.name for spec in regs.metrics.resolve(self.metrics)]
        rows = [Row(key=m, label=m, method=m, published={}) for m in methods]
        columns = [Column(key=f"{d}.{x}", label=x, dataset=d, metric=x, group=d) for d in datasets for x in metrics]
        return rows, columns

    def column(self, key: str) -> Column:
        for col in self.columns:
            if col.key == key:
                return col
        raise KeyError(key)


# -- loading ---------------------------------------------------------------------------------

def _names(value: Any, key: str, where: str, allow_all: bool) -> str | list[str]:
    if allow_all and value == "all":
        return "all"
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty list of names" + (' or "all"' if allow_all else ""))
    return value


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers")
    return check_seeds(value, f"{where}: seeds")


def _overrides(value: Any, where: str) -> Overrides:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"{where}: settings must be tables [..settings.NAME] mapping option names to values")
    return {str(k): dict(v) for k, v in value.items()}


def _unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")


def _metric_ref(value: Any, where: str) -> str:
    """A metric key ("name.key"), or "method_info.PATH" (a dotted path into the record's method_info,
    e.g. "method_info.last_epoch.train.i_t": a term the method logged, averaged over its last epoch)."""
    if isinstance(value, str) and value.startswith(f"{METHOD_INFO}.") and all(value.split(".")):
        return value
    if not isinstance(value, str) or value.count(".") != 1 or not all(value.split(".")):
        raise ConfigError(f"{where}: {value!r} must name a metric and one of its keys, as 'lpips_transfer.lpips', "
                          f"or a value the method records, as '{METHOD_INFO}.last_epoch.latent.reconstruction'")
    return value


def _key(value: Any, where: str) -> str:
    if not isinstance(value, str) or not KEY_RE.match(value):
        raise ConfigError(f"{where}: key {value!r} must be letters, digits, '-', '_' or '.'")
    return value


def _column(data: Any, k: int, where: str) -> Column:
    where = f"{where}: columns[{k}]"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table ([[columns]])")
    _unknown(data, COLUMN_KEYS, where)
    for req in ("key", "dataset", "metric"):
        if req not in data:
            raise ConfigError(f"{where}: missing required key {req!r}")
    key = _key(data["key"], where)
    where = f"{where} ({key!r})"
    for opt in ("label", "group", "dataset", "stand_in", "note", "unavailable"):
        if opt in data and not isinstance(data[opt], str):
            raise ConfigError(f"{where}: {opt} must be a string")
    return Column(
        key=key, label=data.get("label", key), dataset=data["dataset"], metric=_metric_ref(data["metric"], where),
        group=data.get("group", ""), fallback=_metric_ref(data["fallback"], where) if data.get("fallback") else "",
        settings=_overrides(data.get("settings", {}), where), stand_in=data.get("stand_in", ""),
        note=data.get("note", ""), unavailable=data.get("unavailable", ""),
    )


def _row(data: Any, k: int, columns: list[Column], where: str) -> Row:
    where = f"{where}: rows[{k}]"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table ([[rows]])")
    _unknown(data, ROW_KEYS, where)
    if "key" not in data:
        raise ConfigError(f"{where}: missing required key 'key'")
    key = _key(data["key"], where)
    where = f"{where} ({key!r})"
    reference = data.get("reference", "")
    if not isinstance(reference, str):
        raise ConfigError(f"{where}: reference must be a string saying why the row is not run")
    method = data.get("method")
    if method is None and not reference:
        raise ConfigError(f"{where}: give the registered method that produces this row (method = \"...\"), or "
                          "reference = \"why it is not run\" for a row shown with the paper's numbers only")
    if method is not None and not isinstance(method, str):
        raise ConfigError(f"{where}: method must be a name")
    settings = data.get("settings", {})
    if not isinstance(settings, dict) or any(isinstance(v, dict) for v in settings.values()):
        raise ConfigError(f"{where}: settings must map options of the row's method to values "
                          "(dataset or metric options belong in a column's settings)")
    if settings and method is None:
        raise ConfigError(f"{where}: settings need a method")
    rank = data.get("rank", True)
    if not isinstance(rank, bool):
        raise ConfigError(f"{where}: rank must be true or false")
    col_keys = [c.key for c in columns]
    measure = data.get("measure", {})
    if not isinstance(measure, dict):
        raise ConfigError(f"{where}: measure must map column keys to 'metric.key'")
    for col in measure:
        if col not in col_keys:
            raise ConfigError(f"{where}: measure names column {col!r}, which the suite does not have; "
                              f"columns: {', '.join(col_keys)}")
    published_raw = data.get("published")
    if not isinstance(published_raw, dict):
        raise ConfigError(f"{where}: missing the paper's numbers: published = {{ {col_keys[0]} = ..., ... }} "
                          "with one entry per column ('—' where the paper reports none)")
    unknown = sorted(set(published_raw) - set(col_keys))
    if unknown:
        raise ConfigError(f"{where}: published values for unknown column(s) {unknown}; columns: {', '.join(col_keys)}")
    missing = [c for c in col_keys if c not in published_raw]
    if missing:
        raise ConfigError(f"{where}: no published value for column(s) {', '.join(missing)}; type in the paper's "
                          "number, a bound such as '< 0.01', or '—' where the paper reports none")
    published = {c: parse_published(published_raw[c], f"{where}.published.{c}") for c in col_keys}
    return Row(key=key, label=str(data.get("label", key)), method=method, published=published,
               settings=dict(settings), reference=reference, rank=rank,
               measure={c: _metric_ref(v, f"{where}.measure.{c}") for c, v in measure.items()},
               note=str(data.get("note", "")))


def _scales(data: Any, where: str) -> dict[str, Scale]:
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{where}: [scales.NAME] must be tables")
    out = {}
    for name, table in data.items():
        w = f"{where}: scales.{name}"
        if not KEY_RE.match(name):
            raise ConfigError(f"{w}: bad scale name")
        _unknown(table, SCALE_KEYS, w)
        settings_from = table.get("settings_from", "")
        if not isinstance(settings_from, str):
            raise ConfigError(f"{w}: settings_from must name a suite")
        out[name] = Scale(name, str(table.get("description", "")), _overrides(table.get("settings", {}), w),
                          _seeds(table["seeds"], w) if "seeds" in table else None, settings_from)
    return out


def load_suite(path: Path, name: str | None = None) -> Suite:
    """Read and check a suite file (structure only; :func:`validate` checks it against the registries)."""
    path = Path(path)
    where = f"suite file {path}"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    paper = "columns" in data or "rows" in data
    _unknown(data, PAPER_KEYS if paper else PLAIN_KEYS, where)
    if "description" not in data:
        raise ConfigError(f"{where}: missing required key 'description'")
    settings = _overrides(data.get("settings", {}), where)
    citation = data.get("citation", {})
    if not isinstance(citation, dict):
        raise ConfigError(f"{where}: [citation] must be a table")
    if not paper:
        for key in ("methods", "datasets"):
            if key not in data:
                raise ConfigError(f"{where}: missing required key {key!r}")
        return Suite(
            name=name or data.get("name") or path.stem,
            description=str(data["description"]),
            methods=_names(data["methods"], "methods", where, True),
            datasets=_names(data["datasets"], "datasets", where, False),  # type: ignore[arg-type]
            metrics=_names(data.get("metrics", "all"), "metrics", where, True),
            seeds=_seeds(data.get("seeds", [0]), where),
            settings=settings,
            citation=citation,
            path=path,
            claims=parse_claims(data.get("claims", []), where),
        )
    for key in ("methods", "datasets", "metrics"):
        if key in data:
            raise ConfigError(f"{where}: a paper suite takes its {key} from [[rows]] and [[columns]]; remove {key!r}")
    for key in ("paper", "table"):
        if not isinstance(citation.get(key), str) or not citation[key]:
            raise ConfigError(f"{where}: [citation] needs {key!r} (the paper and which of its tables this is)")
    raw_columns, raw_rows = data.get("columns"), data.get("rows")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise ConfigError(f"{where}: a paper suite needs [[columns]] (a dataset and a metric key each)")
    if not isinstance(raw_rows, list) or not raw_rows:
        raise ConfigError(f"{where}: a paper suite needs [[rows]] (a method and the paper's numbers each)")
    columns = [_column(c, k, where) for k, c in enumerate(raw_columns)]
    _unique([c.key for c in columns], "column", where)
    rows = [_row(r, k, columns, where) for k, r in enumerate(raw_rows)]
    _unique([r.key for r in rows], "row", where)
    measured = [c for c in columns if not c.unavailable]
    metrics = sorted(({c.metric_name for c in measured} | {c.fallback.split(".")[0] for c in measured if c.fallback}
                      | {m.split(".")[0] for r in rows for m in r.measure.values()}) - {METHOD_INFO})
    return Suite(
        name=name or data.get("name") or path.stem,
        description=str(data["description"]),
        methods=list(dict.fromkeys(r.method for r in rows if r.method)),
        datasets=list(dict.fromkeys(c.dataset for c in measured)),
        metrics=metrics,
        seeds=_seeds(data.get("seeds", DEFAULT_PAPER_SEEDS), where),
        settings=settings,
        citation=citation,
        path=path,
        columns=columns,
        rows=rows,
        scales=_scales(data.get("scales", {}), where),
        note=str(data.get("note", "")),
    )


def _unique(keys: list[str], what: str, where: str) -> None:
    seen = set()
    for key in keys:
        if key in seen:
            raise ConfigError(f"{where}: two {what}s have the key {key!r}; keys must be unique")
        seen.add(key)


# -- settings and validation against the registries ------------------------------------------

def scale_settings(suite: Suite, scale: str, regs: Any) -> tuple[Overrides, list[int]]:
    """The settings and seeds of ``suite`` at ``scale``: its own settings, then the scale's
    ``settings_from`` suite's and the scale's own."""
    sc = suite.scale(scale)
    base: Overrides = {}
    if sc.settings_from:
        if sc.settings_from == suite.name:
            raise ConfigError(f"suite {suite.name!r}: scale {scale!r} takes its settings from itself")
        base = regs.suites.get(sc.settings_from).load().settings
    return merge(suite.settings, base, sc.settings), list(sc.seeds or suite.seeds)


def _check_metric(regs: Any, ref: str, where: str) -> None:
    name, key = ref.split(".", 1)
    if name == METHOD_INFO:  # what a method records is known only after it trained; a missing path is n/a
        return
    spec = regs.metrics.get(name)  # unknown name: did-you-mean and the list
    if key not in spec.keys:
        raise ConfigError(f"{where}: metric {name!r} has no key {key!r}; its keys: {', '.join(spec.keys)}")


def validate(suite: Suite, regs: Any, scales: Iterable[str] | None = None) -> None:
    """Check ``suite`` against the registries: every method, dataset and metric name (with
    did-you-mean), every metric key, and the options of every scale, column and row, as the runs
    would build them. Raises :class:`ConfigError` or :class:`~disentbench.registry.UnknownNameError`."""
    where = f"suite {suite.name!r}"
    if not suite.is_paper_table:
        regs.datasets.resolve(suite.datasets)
        if suite.methods != "all":
            regs.methods.resolve(suite.methods)
        if suite.metrics != "all":
            regs.metrics.resolve(suite.metrics)
        check_scopes(regs, suite.settings)
        for k, claim in enumerate(suite.claims):
            w = f"{where}, claims[{k}]"
            regs.methods.get(claim.method)
            regs.datasets.get(claim.dataset)
            for ref in claim.keys():
                _check_metric(regs, ref, w)
        return
    for col in suite.columns:
        w = f"{where}, column {col.key!r}"
        if col.unavailable:
            continue  # not measured: its dataset or metric need not exist here
        regs.datasets.get(col.dataset)
        if col.stand_in:
            regs.datasets.get(col.stand_in)
        _check_metric(regs, col.metric, w)
        if col.fallback:
            _check_metric(regs, col.fallback, w)
    for row in suite.rows:
        if row.method is not None:
            regs.methods.get(row.method)
        for col_key, ref in row.measure.items():
            _check_metric(regs, ref, f"{where}, row {row.key!r}, column {col_key!r}")
    for scale in list(scales) if scales is not None else [PAPER_SCALE, *suite.scales]:
        base, _ = scale_settings(suite, scale, regs)
        w = f"{where} at scale {scale!r}"
        try:
            check_scopes(regs, base)
            harness_options(base)
            for col in suite.columns:
                if col.unavailable:
                    continue
                layered = merge(base, col.settings)
                check_scopes(regs, col.settings)
                for ds in filter(None, (col.dataset, col.stand_in)):
                    config_of(regs.datasets.get(ds), layered.get(ds, {}))
                for ref in filter(None, (col.metric, col.fallback)):
                    name = ref.split(".")[0]
                    if name == METHOD_INFO:
                        continue
                    config_of(regs.metrics.get(name), layered.get(name, {}))
            for row in suite.rows:
                if row.method is None:
                    continue
                spec = regs.methods.get(row.method)
                try:
                    spec.load()
                except ImportError:
                    continue  # recorded as a failed run with the import error, as plain sweeps do
                for col in suite.columns:
                    if col.unavailable:
                        continue
                    layered = merge(base, col.settings, {row.method: row.settings})
                    config_of(spec, layered.get(row.method, {}))
        except ConfigError as exc:
            raise ConfigError(f"{w}: {exc}") from None


# -- planning the runs of a suite -------------------------------------------------------------

@dataclass
class TableCellPlan:
    """How one (row, column) of a paper table is measured: the runs (one per seed) on the
    column's dataset, the runs on its stand-in (if it has one), and why it is not run, if so."""

    row: str
    column: str
    runs: list[Any] = field(default_factory=list)  # runner.PlannedRun on the column's dataset, one per seed
    stand_in_runs: list[Any] = field(default_factory=list)  # runner.PlannedRun on its stand-in dataset
    skipped: str = ""  # reason the row is not run at all (reference row, weights missing)
    data_missing: str = ""  # why the column's dataset cannot be loaded here ("" if it can)


@dataclass
class SuitePlan:
    suite: Suite
    scale: str
    seeds: list[int]
    cells: dict[tuple[str, str], TableCellPlan]
    stand_ins: bool = False
    overrides: Overrides = field(default_factory=dict)  # from the command line, layered last
    settings: Overrides = field(default_factory=dict)  # the suite's own at this scale, under ``overrides``

    @property
    def options(self) -> Overrides:
        """Every setting of the sweep (the suite's at this scale, then the command line's): where an
        executor's options (``[settings.local]``) are read from."""
        return merge(self.settings, self.overrides)

    @functools.cached_property
    def changed_settings(self) -> tuple[str, ...]:
        """The command line's ``--set`` values that change what a planned run computes (``scope.key=value``).

        Options of how runs go (an executor's ``local.jobs``, ``train.num_threads``, the device...) are
        not in any run's semantic config and change no number, so they are left out; with nothing
        planned to check against, every value counts. Worked out once: the paper page asks per cell."""
        views = [planned.run.semantic() for tc in self.cells.values() for planned in (*tc.runs, *tc.stand_in_runs)]

        def changes_a_run(scope: str, key: str) -> bool:
            if not views:
                return True
            for view in views:
                tables = [view["method"] if view["method"].get("name") == scope else None,
                          view["dataset"] if view["dataset"].get("name") == scope else None,
                          view["metrics"].get(scope), view.get(scope) if scope in ("train", "eval") else None]
                if any(table is not None and key in table for table in tables):
                    return True
            return False

        return tuple(f"{scope}.{key}={value}" for scope, table in sorted(self.overrides.items())
                     for key, value in sorted(table.items()) if changes_a_run(scope, key))

    def to_run(self, methods: Iterable[str] | None = None, datasets: Iterable[str] | None = None) -> list[Any]:
        """The planned runs to execute (each once), optionally only some methods / datasets:
        the column's own dataset where it is here, else its stand-in when stand-ins are on."""
        methods = set(methods) if methods is not None else None
        datasets = set(datasets) if datasets is not None else None
        out: dict[str, Any] = {}
        for tc in self.cells.values():
            if tc.skipped:
                continue
            runs = tc.runs if not tc.data_missing else (tc.stand_in_runs if self.stand_ins else [])
            for run in runs:
                if (methods is None or run.method in methods) and (datasets is None or run.dataset in datasets):
                    out.setdefault(run.run_id, run)
        return list(out.values())
