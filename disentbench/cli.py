"""The ``disentbench`` command line: run, list, plugins, leaderboard, data, weights."""
from __future__ import annotations

import argparse
import functools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from disentbench import __version__
from disentbench import config as cfg
from disentbench import results
from disentbench.config import ConfigError
from disentbench.paths import cache_root, data_root
from disentbench.plugins import load_registries
from disentbench.registry import RegistryError
from disentbench.results import ResultsError
from disentbench.store import read_records
from disentbench.suites import Suite, validate

DEFAULT_SUITE = "quick"


def _registries():
    regs = load_registries()
    for info in regs.failures:
        print(f"warning: plugin {info.name!r} ({info.distribution or 'local'}) failed to load: {info.error}",
              file=sys.stderr)
    for message in regs.clash_messages():
        print(f"warning: {message}", file=sys.stderr)
    return regs


# -- run -------------------------------------------------------------------------------------

@dataclass
class Sweep:
    """One ``disentbench run``, planned: a plain sweep (a plain suite's, or --methods/--datasets/--seeds)
    and a paper suite's alike. :func:`plan_run` builds it from the arguments and :func:`execute_sweep`
    runs it; the two kinds differ only in these values."""

    cells: list[Any]  # runner.PlannedRun per cell of the sweep, in the order they run
    executor: Any
    header: str  # the line printed before the runs
    suite: Suite | None  # the suite it runs (None: --methods/--datasets without --suite)
    write_page: Callable[[Path], Path]  # writes the user's page(s) into a directory; returns the page
    page_name: str  # what that page is: "disentbench: your <page_name>: <path>"
    page: dict[str, Any]  # how --publish renders the sweep's collection (results/pages.json)
    rows: dict[str, list[str]] = field(default_factory=dict)  # run id -> the paper-table rows it measures

    def label(self, cell: Any) -> str:
        """What the progress report adds to a cell's method: the table rows it measures, if any."""
        rows = self.rows.get(cell.run_id)
        return f" (row {', '.join(rows)})" if rows else ""


def cmd_run(args: argparse.Namespace) -> int:
    _check_run_arguments(args)
    _refuse_out_in_data_root(args)
    regs = _registries()
    return execute_sweep(args, regs, plan_run(args, regs))


def plan_run(args: argparse.Namespace, regs) -> Sweep:
    """The sweep the arguments ask for, every name and option checked before any work. Every sweep is a
    suite planned by :func:`~disentbench.runner.plan_suite`: a paper table (--suite of one), or a plain
    suite's implicit table (--suite or --scale of a plain suite, or --methods/--datasets), the two
    differing only in how they are shown (the header, the page and where --publish puts it)."""
    suite = None
    if args.scale not in (None, "paper") and not args.suite:
        # a plain sweep at --scale NAME runs at the settings of the plain suite NAME (``--scale cpu``)
        scale_suite = regs.suites.get(args.scale).load()
        if scale_suite.is_paper_table:
            raise cfg.ConfigError(f"--scale {args.scale}: a plain sweep's scale is a plain suite, and {args.scale!r} is "
                                  "a paper table (run it with --suite)")
        args.suite, args.scale = args.scale, None
    if args.suite or not (args.methods or args.datasets):
        suite = regs.suites.get(args.suite or DEFAULT_SUITE).load()
    if suite is not None and suite.is_paper_table:
        return _paper_sweep(args, regs, suite)
    return _plain_sweep(args, regs, suite)


def _plain_sweep(args: argparse.Namespace, regs, suite: Suite | None) -> Sweep:
    """methods × datasets × seeds: the plain suite's, with --methods/--datasets/--metrics/--seeds
    instead where given, at the suite's settings and then --config/--set."""
    from disentbench import runner  # here, not at the top: it loads numpy, which `disentbench list` need not

    if args.scale not in (None, "paper") or args.stand_ins:
        raise cfg.ConfigError("--scale with a plain suite: give the suite (--suite) or the scale (--scale), not both; "
                              "--stand-ins applies to paper suites (`disentbench list suites`)")
    methods = args.methods or (suite.methods if suite else "all")
    if methods == "all":  # "all" = all that can run here: leave out methods whose weights are missing
        skipped = runner.unavailable_methods(regs)
        methods = [m for m in regs.methods.names() if m not in skipped]
        for name, reason in skipped.items():
            print(f"disentbench: leaving out method {name!r}: {reason}; run it by name (--methods {name}) "
                  "to see which file to put where", file=sys.stderr)
    table = Suite(name=suite.name if suite else "sweep", description=suite.description if suite else "",
                  methods=methods, datasets=args.datasets or (suite.datasets if suite else "synth3d"),
                  metrics=args.metrics or (suite.metrics if suite else "all"),
                  seeds=suite.seeds if suite else [0], settings=suite.settings if suite else {})
    plan = _suite_plan(args, regs, table)
    cells = plan.to_run()
    executor = _executor(regs, args, plan.options)
    device = cells[0].run.device if cells else args.device
    label = f"suite {suite.name!r}" if suite else "sweep"
    header = (f"disentbench: {label}: {len(cells)} run(s) "
              f"({len({c.method for c in cells})} methods × {len({c.dataset for c in cells})} datasets × "
              f"{len(plan.seeds)} seeds) on {device}, results in {args.out}/")
    return Sweep(cells, executor, header, suite,
                 functools.partial(_write_leaderboard, Path(args.out), suite.claims if suite else None),
                 "leaderboard", _plain_page(args, suite))


def _paper_sweep(args: argparse.Namespace, regs, suite: Suite) -> Sweep:
    """Every row × column of a paper suite it can run here at --scale (--methods/--datasets: some)."""
    if args.metrics:
        raise cfg.ConfigError(f"suite {suite.name!r} is a paper table: its metrics are its columns; drop --metrics")
    plan = _suite_plan(args, regs, suite)
    cells = plan.to_run(methods=args.methods.split(",") if args.methods else None,
                        datasets=args.datasets.split(",") if args.datasets else None)
    executor = _executor(regs, args, plan.options)
    missing = sorted({tc.data_missing.split(". ")[0] for tc in plan.cells.values() if tc.data_missing})
    for reason in missing:
        print(f"disentbench: {reason}: " + ("its columns run on their stand-in datasets, where the suite names one"
                                            if args.stand_ins else "its columns are n/a (--stand-ins runs them on "
                                            "the stand-in datasets the suite names)"), file=sys.stderr)
    device = cells[0].run.device if cells else "cpu"
    header = (f"disentbench: suite {suite.name!r} ({suite.citation.get('table')}) at scale {plan.scale!r}: "
              f"{len(cells)} run(s) on {device}, results in {args.out}/")
    rows: dict[str, list[str]] = {}
    for tc in plan.cells.values():
        for c in tc.runs + tc.stand_in_runs:
            rows.setdefault(c.run_id, [])
            if tc.row not in rows[c.run_id]:
                rows[c.run_id].append(tc.row)
    page = {"suite": suite.name, "scale": plan.scale, "set": args.set, "config": args.config, "seeds": args.seeds,
            "data_dir": args.data_dir, "stand_ins": args.stand_ins, "collections": [_collection(args, suite)]}
    return Sweep(cells, executor, header, suite,
                 functools.partial(_write_paper_pages, regs, suite, plan, [Path(args.out)]), "paper table", page, rows)


def execute_sweep(args: argparse.Namespace, regs, sweep: Sweep) -> int:
    """Run a planned sweep, plain or paper: the header, a line per run, the summary and the failed
    runs; then the user's page (unless --no-leaderboard) and --publish. Exit code 1 if a run failed.
    Under torchrun every rank runs the cells in order (one run trained on several devices) and
    rank 0 alone reports, writes and publishes."""
    from disentbench.training import init_distributed_from_env

    print(sweep.header, flush=True)
    t0 = time.perf_counter()
    rank, world = init_distributed_from_env()
    if world > 1:
        if args.executor != "local" or (getattr(args, "jobs", None) or 1) > 1:
            raise cfg.ConfigError("under torchrun every rank runs the cells in order: use the local executor "
                                  "without --jobs")
        if rank != 0:
            from disentbench import runner

            for cell in sweep.cells:
                runner.execute(cell, regs)
            return 0

    def report(k: int, n: int, cell: Any, record: dict[str, Any]) -> None:
        status = record.get("status")
        if record.get("_skipped"):
            status = "skipped (already finished)" if status == "finished" else status
        head = f"[{k}/{n}] {cell.method}{sweep.label(cell)} on {cell.dataset} seed {cell.seed}: {status}"
        if record.get("status") == "finished" and not record.get("_skipped"):
            t = record.get("timings", {})
            head += f" in {t.get('total_seconds', 0):.0f} s"
        if record.get("status") == "failed":
            err = record.get("error") or {}
            head += f" — {err.get('type')}: {str(err.get('message', '')).splitlines()[0] if err.get('message') else ''}"
        print(head, flush=True)

    records = sweep.executor.run(sweep.cells, report=report) if sweep.cells else []
    failed = [r for r in records if r.get("status") == "failed"]
    print(f"disentbench: {len(records) - len(failed)} of {len(records)} run(s) finished or skipped, "
          f"{len(failed)} failed, in {time.perf_counter() - t0:.0f} s", flush=True)
    _print_failed(failed)
    if not args.no_leaderboard:
        print(f"disentbench: your {sweep.page_name}: {sweep.write_page(_user_leaderboard(args))}")
    if args.publish:
        _publish(args, regs, records, sweep.page, sweep.suite)
    return 1 if failed else 0


def _write_leaderboard(runs: Path, claims: Any, out_dir: Path) -> Path:
    """A plain sweep's page: the run tables of the runs in ``runs``, with the suite's claims."""
    from disentbench import leaderboard

    return leaderboard.write(read_records([runs]), out_dir, claims=claims)


def _plain_page(args: argparse.Namespace, suite: Any) -> dict[str, Any]:
    """Where a published plain sweep is shown: the default suite's and unnamed sweeps' runs in the
    run tables of leaderboard/README.md, a named suite's (``--scale cpu``) on a page of their own,
    ``<collection>.md``, with the suite's claims checked on it when the collection is the suite's own."""
    collection = _collection(args, suite)
    if suite is None or suite.name == DEFAULT_SUITE:
        return {"page": "README.md", "collections": [collection]}
    page: dict[str, Any] = {"page": f"{collection}.md", "collections": [collection]}
    if suite.claims and collection == suite.name:  # not on a collection of other settings (--publish NAME)
        page["claims"] = suite.name
    return page


def _refuse_out_in_data_root(args: argparse.Namespace) -> None:
    """The run store must not live in the data root: installing a dataset writes `<root>/<name>/`,
    the very place of `<out>/<dataset>/` run directories when the two coincide."""
    out, root = Path(args.out).expanduser().resolve(), data_root(args.data_dir).resolve()
    if out == root or out.is_relative_to(root):
        raise cfg.ConfigError(f"--out {args.out} is inside the data root {root} (--data-dir, $DISENTBENCH_DATA): "
                              "dataset installs write there; choose an --out outside it")


def _user_leaderboard(args: argparse.Namespace) -> Path:
    """Where a run writes its own tables: --leaderboard, else <out>/leaderboard (never the
    committed leaderboard/, which only --publish rewrites)."""
    return Path(args.leaderboard) if args.leaderboard else Path(args.out) / "leaderboard"


def _collection(args: argparse.Namespace, suite: Any) -> str:
    if isinstance(args.publish, str):
        return args.publish
    return suite.name if suite is not None else "runs"


def _publish(args: argparse.Namespace, regs, records: list[dict[str, Any]], page: dict[str, Any], suite: Any) -> None:
    """--publish: add this sweep's finished runs to results/<collection>, record how the page is
    rendered, and re-render every published page into leaderboard/."""
    root = Path(args.results)
    collection = _collection(args, suite)
    # failed runs are results too: a run that diverged or learned nothing is shown as failed
    ids = [r["run_id"] for r in records if r.get("status") in ("finished", "failed") and r.get("run_id")]
    report = results.import_runs([Path(args.out)], root / collection, run_ids=ids, finished_only=False)
    for line in report.lines():
        print(f"disentbench: publish to {root / collection}: {line}")
    if report.conflicts:
        raise results.ResultsError(f"nothing was published to leaderboard/: fix the runs above, or import them "
                                   "into another collection (--publish NAME)")
    results.add_page(root, page)
    for path in render_published(regs, root, Path(args.published_leaderboard)):
        print(f"disentbench: published {path}")


def render_published(regs, root: Path, out_dir: Path) -> list[Path]:
    """Every page listed in ``<root>/pages.json``, rendered from the records under ``root``."""
    from disentbench import leaderboard

    written = []
    pages = results.read_pages(root)
    others = [(Path(p["page"]).stem, p["page"]) for p in pages if p.get("page") not in (None, "README.md")]
    for page in pages:
        runs = [root / c for c in page.get("collections", [])]
        if page.get("page") == "README.md":
            written.append(leaderboard.write(read_records([r for r in runs if r.exists()]), out_dir, links=others))
            continue
        if page.get("page"):  # a named plain suite's page, with the suite's claims
            claims = regs.suites.get(page["claims"]).load().claims if page.get("claims") else None
            written.append(leaderboard.write(read_records([r for r in runs if r.exists()]), out_dir, name=page["page"],
                                             title=f"disentbench: {', '.join(page.get('collections', []))}",
                                             claims=claims, links=[("all results", "README.md")]))
            continue
        suite = regs.suites.get(page["suite"]).load()
        ns = argparse.Namespace(scale=page.get("scale"), set=page.get("set"), config=page.get("config"),
                                seeds=page.get("seeds"), data_dir=page.get("data_dir"),
                                stand_ins=bool(page.get("stand_ins")), out=str(runs[0]) if runs else "runs")
        written.append(_write_paper_pages(regs, suite, _suite_plan(ns, regs, suite), runs, out_dir))
    return written


def _check_run_arguments(args: argparse.Namespace) -> None:
    """The command line's own values, checked before any work (``--set``/``--config`` values are checked
    where the configs are built): one line each, exit code 2."""
    if args.seeds is not None:
        cfg.parse_seeds(args.seeds)
    writable_directory(args.out, "--out")
    if not args.no_leaderboard:
        writable_directory(_user_leaderboard(args), "--leaderboard")


def writable_directory(path: str | Path, option: str) -> None:
    """Raise ConfigError unless ``path`` is (or can be made) a directory this process can write in:
    tried by creating and removing a file in it or in its nearest existing parent."""
    import os
    import tempfile

    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == path else f"cannot be created: {str(probe)!r} is a file"
        raise cfg.ConfigError(f"{option} {str(path)!r} {where}, not a directory; give a directory to write in")
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".disentbench-write-test-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        where = "" if probe == path else f" (its nearest existing parent {str(probe)!r})"
        raise cfg.ConfigError(f"{option} {str(path)!r}{where} is not writable: {exc.strerror or exc}; give a "
                              "directory you can write to") from None


def _suite_plan(args: argparse.Namespace, regs, suite):
    """The suite's plan at --scale with --config/--set/--seeds (what run and leaderboard share); a
    plain suite's at its own settings."""
    from disentbench import runner

    scale = args.scale or "paper"
    if suite.is_paper_table:
        validate(suite, regs, scales=[scale])
    overrides = cfg.merge(*(cfg.load_toml(p) for p in args.config or []), cfg.parse_sets(args.set))
    seeds = cfg.parse_seeds(args.seeds) if args.seeds else None
    device = getattr(args, "device", None)
    return runner.plan_suite(suite, regs, scale=scale, overrides=overrides, seeds=seeds, out=getattr(args, "out", "runs"),
                      data_dir=args.data_dir, device=device, require_metrics=getattr(args, "require_metrics", False),
                      progress=not getattr(args, "quiet", False), stand_ins=args.stand_ins)


def _write_paper_pages(regs, suite, plan, runs: list[Path], out_dir: Path) -> Path:
    from disentbench import paper_tables

    records = read_records([r for r in runs if r.exists()])
    path = paper_tables.write(suite, plan, records, paper_tables.MetricInfo.from_registries(regs), out_dir)
    suites = []
    for spec in regs.suites:
        try:
            suites.append(spec.load())
        except Exception as exc:  # noqa: BLE001  (a broken suite file of some plugin: leave it out of the index)
            print(f"disentbench: suite {spec.name!r} left out of the index: {exc}", file=sys.stderr)
    paper_tables.write_index(suites, out_dir)
    return path


def _executor(regs, args: argparse.Namespace, overrides: dict[str, dict[str, Any]]):
    """The executor named by --executor, configured by its [NAME] options and the command-line
    options executors add (``--jobs``, ``--ray-address``: :class:`~disentbench.specs.CommandLineOption`)."""
    import dataclasses
    import importlib.util

    spec = regs.executors.get(args.executor)
    for req in spec.requires:
        kind, _, name = req.partition(":")
        if kind == "package" and importlib.util.find_spec(name) is None:
            raise cfg.ConfigError(f"executor {spec.name!r} needs the Python package {name!r}: "
                                  f"pip install 'disentbench[{spec.name}]'")
    options = dict(overrides.get(spec.name, {}))
    for owner, opt in executor_options(regs):
        value = getattr(args, _dest(opt), None)
        if value is None:
            continue
        if owner.name != spec.name:
            raise cfg.ConfigError(f"{opt.flag} applies to the {owner.name} executor (--executor {owner.name}); "
                                  f"for {spec.name!r} set its own options (--set {spec.name}.FIELD=VALUE)")
        config = getattr(spec.load(), "Config", None)
        field = {f.name: f for f in dataclasses.fields(config)}.get(opt.field) if config else None
        rule = cfg.rule_for(field) if field else None
        if rule is not None and not rule.test(value):
            raise cfg.ConfigError(f"{opt.flag} {value} is not allowed: expected {rule.text} ({opt.help})")
        options[opt.field] = value
    return spec.build(options)


def executor_options(regs) -> list[tuple[Any, Any]]:
    """(executor spec, option) for every command-line option a registered executor adds."""
    return [(spec, opt) for spec in regs.executors for opt in spec.options]


def _dest(opt) -> str:
    return opt.flag.lstrip("-").replace("-", "_")


def _add_executor_options(run: argparse.ArgumentParser, regs) -> None:
    """The flags the registered executors add to ``run``; one that clashes with a flag already
    there is left out with a warning (the executor's --set options still work)."""
    for spec, opt in executor_options(regs):
        try:
            run.add_argument(opt.flag, type=opt.type, metavar=opt.metavar, dest=_dest(opt),
                             help=f"{spec.name} executor: {opt.help}")
        except argparse.ArgumentError:
            print(f"warning: executor {spec.name!r}: its option {opt.flag} clashes with another; it is left out "
                  f"(use --set {spec.name}.{opt.field}=VALUE)", file=sys.stderr)


# -- list / plugins --------------------------------------------------------------------------

def _origin(regs, attr: str, name: str) -> str:
    return _plugin_origin(regs.plugin_of(attr, name))


def _plugin_origin(info) -> str:
    if info is None:
        return "?"
    if info.builtin:
        return "built-in"
    return f"{info.distribution or info.name} {info.version or ''}".strip()


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    regs = _registries()
    kinds = [args.kind] if args.kind else ["methods", "datasets", "metrics", "weights", "suites", "executors"]
    extra_headers = {"methods": 2, "datasets": 2, "metrics": 2, "weights": 2, "suites": 0, "executors": 0}
    for kind in kinds:
        registry = getattr(regs, kind)
        rows = []
        for spec in registry:
            if kind == "methods":
                extra = [spec.supervision, ", ".join(spec.requires) or "-"]
            elif kind == "datasets":
                extra = [", ".join(spec.factors) or "-", spec.source or "-"]
            elif kind == "metrics":
                extra = [", ".join(f"{k} {'↑' if d == 'max' else '↓' if d == 'min' else '(info)'}"
                                   for k, d in spec.keys.items()), ", ".join(spec.requires) or "-"]
            elif kind == "weights":
                extra = [spec.filename, ", ".join(spec.used_by) or "-"]
            else:
                extra = []
            rows.append([spec.name, spec.description, *extra, _origin(regs, kind, spec.name)])
        for name, origins in registry.clashes.items():  # listed, but unusable until one plugin goes
            rows.append([name, "(registered twice: cannot be used, see the warning)", *["-"] * extra_headers[kind],
                         " and ".join(_plugin_origin(regs.plugins.get(o)) for o in origins)])
        headers = {"methods": ["method", "description", "supervision", "requires", "from"],
                   "datasets": ["dataset", "description", "content factors", "source", "from"],
                   "metrics": ["metric", "description", "keys", "requires", "from"],
                   "weights": ["weights", "description", "file", "used by", "from"],
                   "suites": ["suite", "description", "from"],
                   "executors": ["executor", "description", "from"]}[kind]
        print(f"{kind}:")
        print(tabulate(rows, headers=headers, tablefmt="simple", maxcolwidths=[None, 60] + [40] * (len(headers) - 2))
              if rows else "  (none registered)")
        print()
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    regs = _registries()
    rows = []
    for info in sorted(regs.plugins.values(), key=lambda i: (not i.builtin, i.name)):
        registered = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(info.registered.items()))
        clash = f"registered by another plugin too: {', '.join(info.clashes)}" if info.clashes else ""
        rows.append([info.name, info.distribution or "-", info.version or "-", "yes" if info.builtin else "no",
                     registered or "-", "; ".join(e for e in (info.error, clash) if e)])
    print(tabulate(rows, headers=["plugin", "distribution", "version", "built-in", "registered", "error"],
                   tablefmt="simple", maxcolwidths=[None, None, None, None, 70, 50]))
    return 1 if regs.failures or regs.clash_messages() else 0


def _print_failed(failed: list[dict[str, Any]]) -> None:
    """One line per failed cell under the sweep's summary: which, and why."""
    for r in failed:
        err = r.get("error") or {}
        message = str(err.get("message") or "").strip().splitlines()
        print(f"  failed: {r.get('method')} on {r.get('dataset')} seed {r.get('seed')}: {err.get('type')}: "
              f"{message[0][:300] if message else ''}", flush=True)


# -- leaderboard -----------------------------------------------------------------------------

def cmd_leaderboard(args: argparse.Namespace) -> int:
    from disentbench import leaderboard

    out = Path(args.out) if args.out else (Path("leaderboard") if args.publish else Path(args.runs[0]) / "leaderboard")
    writable_directory(out, "--out")
    if args.publish:
        paths = render_published(_registries(), Path(args.results), out)
        print(f"disentbench: {len(paths)} published page(s) rendered from {args.results}/ → {out}/")
        return 0
    if args.suite:
        regs = _registries()
        suite = regs.suites.get(args.suite).load()
        if suite.is_paper_table:
            plan = _suite_plan(args, regs, suite)
            path = _write_paper_pages(regs, suite, plan, [Path(r) for r in args.runs], out)
            print(f"disentbench: paper table of suite {suite.name!r} at scale {plan.scale!r} → {path}")
            return 0
    records = read_records([Path(r) for r in args.runs])
    path = leaderboard.write(records, out)
    print(f"disentbench: {len(records)} run record(s) → {path}")
    return 0


# -- results ---------------------------------------------------------------------------------

def cmd_results(args: argparse.Namespace) -> int:
    missing = [d for d in args.dirs if not Path(d).is_dir()]
    if missing:
        print(f"disentbench: error: no such run store: {', '.join(missing)}", file=sys.stderr)
        return 2
    report = results.import_runs([Path(d) for d in args.dirs], Path(args.into), finished_only=False)
    for line in report.lines():
        print(f"disentbench: {line}")
    return 0 if report.ok else 1


def cmd_compare(args: argparse.Namespace) -> int:
    per_metric = {}
    for item in args.tol or []:
        name, sep, value = item.partition("=")
        try:
            per_metric[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            print(f"disentbench: error: --tol {item!r}: expected METRIC[.KEY]=NUMBER, e.g. leakage=0.02", file=sys.stderr)
            return 2
    for d in (args.a, args.b):
        if not Path(d).is_dir():
            print(f"disentbench: error: no such result set: {d}", file=sys.stderr)
            return 2
    drifts, only_a, only_b = results.compare([Path(args.a)], [Path(args.b)],
                                             results.Tolerance(args.atol, args.rtol, per_metric))
    moved = [d for d in drifts if d.moved]
    runs = len({d.run_id for d in drifts})
    if moved or args.all:
        print(results.drift_table(drifts, all_rows=args.all))
    for run_id in only_a:
        print(f"only in A: {run_id}")
    for run_id in only_b:
        print(f"only in B: {run_id}")
    print(f"disentbench: {runs} run(s) in both, {len(drifts)} value(s) compared, {len(moved)} moved beyond tolerance")
    return 1 if moved else 0


# -- data ------------------------------------------------------------------------------------

def _dataset(regs, name: str, sets: list[str] | None):
    options = cfg.parse_sets(sets).get(name, {})
    return regs.datasets.get(name).build(options)


def _show(value: Any, indent: int = 0) -> list[str]:
    """A dict as indented "key: value" lines (lists of scalars on one line)."""
    pad = "  " * indent
    lines = []
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{pad}{key}:")
            lines.extend(_show(item, indent + 1))
        elif isinstance(item, (list, tuple)):
            lines.append(f"{pad}{key}: {', '.join(str(v) for v in item)}")
        else:
            lines.append(f"{pad}{key}: {item}")
    return lines


def cmd_data(args: argparse.Namespace) -> int:
    import json

    from disentbench.contracts import Unavailable
    from disentbench.download import ChecksumError, UnsafeArchiveError

    regs = _registries()
    root = data_root(args.data_dir)
    names = regs.datasets.names() if args.names == ["all"] else args.names
    regs.datasets.resolve(names)  # every unknown name reported at once, before any work
    status = 0
    for name in names:
        dataset = _dataset(regs, name, args.set)
        if args.action == "fetch":
            fetch = getattr(dataset, "fetch", None)
            if fetch is None:
                print(f"{name}: nothing to fetch (generated or loaded on demand)")
                continue
            try:
                folder = fetch(root, progress=not args.quiet)
                print(f"{name}: fetched and verified: {folder or root}")
            except (Unavailable, ChecksumError, UnsafeArchiveError, ValueError, OSError) as exc:
                print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                status = 1
        else:
            describe = getattr(dataset, "describe", None)
            try:
                if describe is not None:
                    import inspect  # --verify: re-hash every file (datasets whose describe() can)

                    rehash = {"verify": True} if args.verify and "verify" in inspect.signature(describe).parameters else {}
                    info = describe(root, cache_root() / "datasets", **rehash)
                elif args.names == ["all"]:  # loading may mean generating: only when asked by name
                    info = {"note": f"no files to describe; `disentbench data info {name}` loads it to show its splits"}
                else:
                    bundle = dataset.load(root, cache_root() / "datasets", progress=not args.quiet)
                    info = {"splits": {k: len(v) for k, v in bundle.splits.items()}, **bundle.info}
            except Unavailable as exc:
                info = {"found": False, "how_to_get": str(exc)}
            if info.get("found") is False or str(info.get("checksums", "")).startswith("CORRUPT"):
                status = 1
            if args.json:
                print(json.dumps({"dataset": name, **info}, indent=2, default=str))
            else:
                print("\n".join([f"{name}:"] + _show(info, 1)) + "\n")
    return status


# -- weights ---------------------------------------------------------------------------------

def cmd_weights(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from disentbench.weights import WeightStore

    regs = _registries()
    store = WeightStore(regs.weights)
    if args.action == "list":
        rows = []
        for spec in regs.weights:
            size = f"{spec.size / 2**20:.1f} MB" if spec.size else "?"
            sha = (spec.sha256 if len(spec.sha256) == 64 else f"{spec.sha256}… (prefix)") if spec.sha256 else "(none published)"
            rows.append([spec.name, store.status(spec.name), ", ".join(spec.used_by) or "-", size, sha,
                         spec.url or "(manual)", str(store.path_of(spec.name))])
        print(tabulate(rows, headers=["weights", "status", "used by", "size", "sha256", "url", "path"],
                       tablefmt="simple", maxcolwidths=[None, None, 30, None, None, 60, None]))
        print(f"\nroot: {store.root} ($DISENTBENCH_WEIGHTS, else $TORCH_HOME/hub/checkpoints); "
              "`disentbench weights fetch [NAME ...]` downloads and verifies")
        return 0
    names = args.names or (regs.weights.names() if args.action == "fetch" else [])
    if not names:
        print("give the name(s) of registered weights; `disentbench weights list` shows them", file=sys.stderr)
        return 2
    regs.weights.resolve(names)
    status = 0
    for name in names:
        if args.action == "path":
            print(store.path_of(name))
            continue
        try:
            print(f"{name}: {store.fetch(name, progress=not args.quiet)} (verified)")
        except Exception as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
    return status


# -- parser ----------------------------------------------------------------------------------

def build_parser(regs=None) -> argparse.ArgumentParser:
    """The command line; ``run`` gets the flags the executors of ``regs`` (default: the installed
    plugins) add."""
    parser = argparse.ArgumentParser(
        prog="disentbench",
        description="Benchmark class/content disentanglement methods. `disentbench run` with no "
                    "arguments runs the quick suite on the built-in synthetic dataset.",
    )

    parser.add_argument("--version", action="version", version=f"disentbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate methods × datasets × seeds, then write the leaderboard")
    run.add_argument("--suite", help=f"a registered suite (default: {DEFAULT_SUITE!r} when no --methods/--datasets)")
    run.add_argument("--methods", help="'all' or comma-separated method names")
    run.add_argument("--datasets", help="comma-separated dataset names")
    run.add_argument("--metrics", help="'all' or comma-separated metric names")
    run.add_argument("--seeds", help="comma-separated seeds or ranges, e.g. 0,1,2 or 0-4,7")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto: --set train.device "
                     "if given, else cuda where available, else cpu)")
    run.add_argument("--out", default="runs", help="run store directory (default ./runs)")
    run.add_argument("--data-dir", help="dataset root (default $DISENTBENCH_DATA or ~/.cache/disentbench/data)")
    run.add_argument("--set", action="append", metavar="NAME.FIELD=VALUE",
                     help="override an option, e.g. lord.epochs=5, synth3d.resolution=64, train.precision=bf16")
    run.add_argument("--config", action="append", metavar="FILE.toml", help="options as TOML tables ([lord] epochs = 5)")
    run.add_argument("--leaderboard", help="where to write your leaderboard (default <out>/leaderboard; the "
                                           "committed leaderboard/ changes only with --publish)")
    run.add_argument("--publish", nargs="?", const=True, default=False, metavar="COLLECTION",
                     help="add the finished runs' records to results/COLLECTION (default: the suite's name, or "
                          "'runs') and re-render the published pages in leaderboard/")
    run.add_argument("--results", default="results", help="the published results (default ./results)")
    run.add_argument("--published-leaderboard", default="leaderboard", help=argparse.SUPPRESS)
    run.add_argument("--no-leaderboard", action="store_true", help="do not write the leaderboard")
    run.add_argument("--require-metrics", action="store_true", help="fail a run when any metric is unavailable")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--executor", default="local", help="where cells run: local (default), ray, slurm, or a plugin's")
    _add_executor_options(run, regs if regs is not None else load_registries())
    _paper_arguments(run)
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="list registered methods, datasets, metrics, weights or suites")
    lst.add_argument("kind", nargs="?", choices=["methods", "datasets", "metrics", "weights", "suites", "executors"])
    lst.set_defaults(func=cmd_list)

    plg = sub.add_parser("plugins", help="list installed plugins, their versions and what they registered")
    plg.set_defaults(func=cmd_plugins)

    lb = sub.add_parser("leaderboard", help="render leaderboard/README.md (or a paper suite's NAME.md) from run records")
    lb.add_argument("--runs", nargs="+", default=["runs"], help="run store directories (default ./runs)")
    lb.add_argument("--out", help="output directory (default <first --runs>/leaderboard; with --publish ./leaderboard)")
    lb.add_argument("--publish", action="store_true",
                    help="re-render every published page (results/pages.json) from results/ into leaderboard/")
    lb.add_argument("--results", default="results", help="the published results (default ./results)")
    lb.add_argument("--suite", help="render this paper suite's table (NAME.md) and the index README.md; give the "
                                    "--scale, --set, --config and --seeds of the run")
    lb.add_argument("--data-dir", help="dataset root, to say which columns' data is missing")
    lb.add_argument("--set", action="append", metavar="NAME.FIELD=VALUE", help="as given to `run --suite`")
    lb.add_argument("--config", action="append", metavar="FILE.toml", help="as given to `run --suite`")
    lb.add_argument("--seeds", help="as given to `run --suite`")
    _paper_arguments(lb)
    lb.set_defaults(func=cmd_leaderboard)

    data = sub.add_parser("data", help="fetch datasets (download, verify, install) or show where they are, their "
                                        "size, checksum state and splits",
                          description="`data fetch NAME` downloads, verifies and installs a dataset under the data "
                                      "root (or says which file to put where when it cannot be downloaded); "
                                      "`data info NAME` shows where it is, its size, checksum state, cache and splits. "
                                      "NAME may be 'all'.")
    data.add_argument("action", choices=["fetch", "info"])
    data.add_argument("names", nargs="+", metavar="NAME")
    data.add_argument("--data-dir", help="dataset root (default $DISENTBENCH_DATA or ~/.cache/disentbench/data)")
    data.add_argument("--set", action="append", metavar="NAME.FIELD=VALUE",
                      help="dataset options, e.g. cars3d.resolution=32 (info then describes that cache)")
    data.add_argument("--json", action="store_true", help="info as JSON")
    data.add_argument("--verify", action="store_true",
                      help="info: re-hash every file instead of trusting the checksums remembered by size and time")
    data.add_argument("--quiet", action="store_true")
    data.set_defaults(func=cmd_data)

    res = sub.add_parser("results", help="add run records from other stores (a cluster, a GPU box) to results/")
    res.add_argument("action", choices=["import"])
    res.add_argument("dirs", nargs="+", metavar="DIR", help="run stores to import from")
    res.add_argument("--into", default="results/runs", help="the collection to add them to (default results/runs)")
    res.set_defaults(func=cmd_results)

    cmp = sub.add_parser("compare", help="compare two result sets run by run and metric by metric; exit 1 when a "
                                         "value moved beyond its tolerance",
                         description="Match the runs of two stores by run id (method, dataset, seed, config hash) and "
                                     "compare every metric value. A value moved when |B - A| > atol + rtol·|A|, or "
                                     "beyond the absolute tolerance given for its metric with --tol.")
    cmp.add_argument("a", help="result set A (a run store or a results/ collection)")
    cmp.add_argument("b", help="result set B")
    cmp.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance (default 1e-4)")
    cmp.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance (default 1e-3)")
    cmp.add_argument("--tol", action="append", metavar="METRIC[.KEY]=ATOL",
                     help="absolute tolerance for one metric or key, e.g. leakage=0.02 or fid.fid=0.5")
    cmp.add_argument("--all", action="store_true", help="print every compared value, not only those that moved")
    cmp.set_defaults(func=cmd_compare)

    w = sub.add_parser("weights", help="list, fetch or locate pretrained weight files")
    w.add_argument("action", choices=["list", "fetch", "path"])
    w.add_argument("names", nargs="*", metavar="NAME")
    w.add_argument("--quiet", action="store_true")
    w.set_defaults(func=cmd_weights)
    return parser


def _paper_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", help="paper suites: 'paper' (the paper's settings, default) or a scale the suite "
                                        "defines, e.g. 'quick' (shrunk to run on a CPU in minutes)")
    parser.add_argument("--stand-ins", action="store_true",
                        help="paper suites: run columns whose dataset is missing here on the stand-in dataset the "
                             "suite names (footnoted; not comparable with the paper)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (RegistryError, ConfigError, ResultsError) as exc:
        print(f"disentbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("disentbench: interrupted; rerun the same command to resume (finished runs are skipped)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
