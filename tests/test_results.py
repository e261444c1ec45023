"""Results as data: publishing runs into results/, importing from other stores, drift checks, and
the committed leaderboard pages rebuilt from the committed results byte for byte."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from disentbench import results
from disentbench.cli import main, render_published
from disentbench.plugins import load_registries
from disentbench.store import RECORD_SCHEMA

from test_cli import _sets

REPO = Path(__file__).resolve().parent.parent


def _record(run_id: str = "synth3d/lord/seed0-abc123abc123", mse: float = 0.01, **changes) -> dict:
    dataset, method, rest = run_id.split("/")
    record = {key: None for key in RECORD_SCHEMA}
    record.update(
        schema_version=1, run_id=run_id, status="finished", method=method, dataset=dataset, seed=0,
        config_hash=rest.split("-")[1], config={"method": {"name": method}}, supervision="class",
        metrics={"transfer_error": {"status": "ok", "values": {"mse": mse, "ssim": 0.5}, "directions":
                                    {"mse": "min", "ssim": "max"}, "reason": None, "notes": ""}},
        timings={"train_seconds": 1.0}, artifacts={}, method_info={}, versions={"disentbench": "0.1.0"},
        env={"disentbench_git": "0123abcd", "libraries": {"torch": "2.14.1"}, "device": "cpu", "device_name": "x86"},
        data={"cache_key": "feedbeef"}, started_at=0.0, finished_at=1.0,
    )
    record.update(changes)
    return record


def _store(root: Path, *records: dict) -> Path:
    for r in records:
        d = root / r["run_id"]
        d.mkdir(parents=True, exist_ok=True)
        (d / "record.json").write_text(json.dumps(r))
        (d / "state.pt").write_bytes(b"weights, never published")
        (d / "train_log.jsonl").write_text('{"stage": "s", "epoch": 0, "step": 1, "loss": 0.5}\n')
    return root


def test_import_adds_skips_duplicates_and_reports_conflicts(tmp_path):
    src = _store(tmp_path / "cluster", _record())
    dest = tmp_path / "results" / "runs"
    report = results.import_runs([src], dest)
    assert report.added == ["synth3d/lord/seed0-abc123abc123"] and report.ok
    run = dest / "synth3d/lord/seed0-abc123abc123"
    assert (run / "record.json").is_file() and (run / "train_log.jsonl").is_file()
    assert not (run / "state.pt").exists()  # never weights or checkpoints
    again = results.import_runs([src], dest)
    assert again.duplicates == ["synth3d/lord/seed0-abc123abc123"] and not again.added
    other = _store(tmp_path / "gpu", _record(mse=0.02, env={"disentbench_git": "f00", "libraries": {"torch": "2.13"},
                                                             "device": "cuda", "device_name": "H200"}))
    conflict = results.import_runs([other], dest)
    assert not conflict.ok and "measured differently" in conflict.conflicts[0] and "metrics" in conflict.conflicts[0]
    assert json.loads((run / "record.json").read_text())["metrics"]["transfer_error"]["values"]["mse"] == 0.01


def test_import_requires_provenance(tmp_path, capsys):
    bad = _record(env={"libraries": {}}, data={})
    src = _store(tmp_path / "store", bad)
    rc = main(["results", "import", str(src), "--into", str(tmp_path / "results" / "runs")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "no project commit" in out and "no library versions" in out and "no dataset checksum" in out
    assert not (tmp_path / "results" / "runs" / bad["run_id"]).exists()


def test_compare_flags_what_moved_beyond_tolerance(tmp_path, capsys):
    a = _store(tmp_path / "a", _record(), _record("synth3d/drnet/seed0-def456def456"))
    b = _store(tmp_path / "b", _record(mse=0.0105), _record("synth3d/drnet/seed0-def456def456"),
               _record("synth3d/mlvae/seed0-aaa111aaa111"))
    assert main(["compare", str(a), str(a)]) == 0
    assert "0 moved" in capsys.readouterr().out
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "MOVED" in out and "transfer_error.mse" in out and "synth3d/lord/seed0-abc123abc123" in out
    assert "drnet" not in out.split("only in B")[0]  # unchanged runs are not listed as moved
    assert "only in B: synth3d/mlvae/seed0-aaa111aaa111" in out
    assert main(["compare", str(a), str(b), "--tol", "transfer_error=0.001"]) == 0
    assert main(["compare", str(a), str(b), "--tol", "transfer_error.mse=1e-4"]) == 1
    failed = _store(tmp_path / "c", _record(status="failed"))
    assert main(["compare", str(a), str(failed)]) == 1  # a run that failed on one side moved
    assert main(["compare", str(a), str(b), "--tol", "nonsense"]) == 2


def test_tolerance_is_per_metric_then_relative():
    tol = results.Tolerance(atol=1e-4, rtol=1e-2, per_metric={"leakage": 0.05, "fid.fid": 0.5})
    assert tol.of("leakage.class_from_content", 0.3) == 0.05
    assert tol.of("fid.fid", 10.0) == 0.5
    assert tol.of("transfer_error.mse", 2.0) == pytest.approx(1e-4 + 2e-2)


def test_a_users_run_leaves_the_committed_leaderboard_alone_until_published(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    committed = tmp_path / "leaderboard"
    committed.mkdir()
    (committed / "README.md").write_text("the committed page\n")
    args = ["run", "--methods", "lord", "--datasets", "synth3d", "--metrics", "transfer_error,reconstruction",
            "--device", "cpu", "--quiet", *_sets()]
    assert main(args) == 0
    assert (committed / "README.md").read_text() == "the committed page\n"
    assert "your leaderboard: runs/leaderboard/README.md" in capsys.readouterr().out
    assert (tmp_path / "runs" / "leaderboard" / "README.md").is_file()
    assert main(args + ["--publish", "mine"]) == 0
    page = (committed / "README.md").read_text()
    assert "| lord" in page and "the committed page" in page  # text outside the markers is kept
    run = next((tmp_path / "results" / "mine" / "synth3d" / "lord").iterdir())
    assert {p.name for p in run.iterdir()} >= {"record.json", "config.json", "metrics.json", "env.json"}
    assert not (run / "state.pt").exists()
    assert results.read_pages(tmp_path / "results") == [{"page": "README.md", "collections": ["mine"]}]
    # the published pages are a function of results/ alone: rebuilt elsewhere, byte for byte
    assert main(["leaderboard", "--publish", "--out", str(tmp_path / "rebuilt")]) == 0
    assert (tmp_path / "rebuilt" / "README.md").read_text() == page.split("the committed page\n", 1)[1].lstrip("\n")
    curves = list((committed / "curves").glob("synth3d-lord-*.png"))
    assert curves and f"(curves/{curves[0].name})" in page


def test_committed_pages_are_rebuilt_from_committed_results_byte_for_byte(tmp_path, monkeypatch):
    """CI's check that every page under leaderboard/ comes from the records under results/."""
    monkeypatch.chdir(REPO)  # pages.json names the data root as given on the command line (../shared/data)
    pages = results.read_pages(REPO / "results")
    assert pages, "results/pages.json lists no published page"
    written = render_published(load_registries(), REPO / "results", tmp_path)
    assert {p.name for p in written} >= {"README.md"}
    for path in sorted(tmp_path.glob("*.md")):
        committed = REPO / "leaderboard" / path.name
        assert committed.is_file(), f"{path.name} is rendered from results/ but not committed"
        assert path.read_text() == committed.read_text(), f"leaderboard/{path.name} differs from its rebuild"
    # the images too: every grid, curve and plot a page links is committed, and none is left over
    # from a record that has since left results/
    def images(root):
        return {p.relative_to(root).as_posix() for sub in ("grids", "curves", "plots") for p in (root / sub).glob("*.png")}
    rebuilt, committed_images = images(tmp_path), images(REPO / "leaderboard")
    assert not rebuilt - committed_images, f"linked but not committed: {sorted(rebuilt - committed_images)}"
    assert not committed_images - rebuilt, f"committed but no page links them: {sorted(committed_images - rebuilt)}"


def test_tradeoff_and_curves_plots(tmp_path):
    from disentbench import plots

    records = []
    for seed, (mse, leak) in enumerate([(0.01, 0.3), (0.012, 0.35)]):
        r = _record(f"synth3d/lord/seed{seed}-abc123abc123", mse=mse)
        r["metrics"]["leakage"] = {"status": "ok", "values": {"class_from_content": leak, "chance_class": 0.1}}
        records.append(r)
    assert plots.tradeoff_plot(records, "synth3d", tmp_path / "t.png").stat().st_size > 1000
    assert plots.tradeoff_plot(records, "cars3d", tmp_path / "none.png") is None
    log = [{"stage": "latent", "epoch": 0, "step": k, "loss": 1.0 / k, "kl": 0.1} for k in range(1, 900)]
    path = plots.curves_plot(log, "lord", tmp_path / "c.png")
    assert path.stat().st_size > 1000
    first = path.read_bytes()
    plots.curves_plot(copy.deepcopy(log), "lord", tmp_path / "c.png")
    assert path.read_bytes() == first  # deterministic bytes


def test_a_failed_run_is_published_as_failed(tmp_path, monkeypatch):
    """A run that diverged or learned nothing is a result too: published, and shown as failed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISENTBENCH_PLUGINS", "testplugins")
    rc = main(["run", "--methods", "failing,lord", "--datasets", "synth3d", "--metrics", "reconstruction",
               "--device", "cpu", "--quiet", "--publish", "mixed", *_sets()])
    assert rc == 1
    statuses = {json.loads(p.read_text())["method"]: json.loads(p.read_text())["status"]
                for p in (tmp_path / "results" / "mixed").glob("**/record.json")}
    assert statuses == {"failing": "failed", "lord": "finished"}
    page = (tmp_path / "leaderboard" / "README.md").read_text()
    assert "| lord" in page and "always fails" in page


def test_budget_curve_plot_reads_the_scores_of_each_budget(tmp_path):
    """The budget curve: a method trained at several budgets gets its swap and leakage scores
    against images seen (one point per run), with the runs' own chance levels; one budget draws nothing."""
    from disentbench import plots
    from disentbench.leaderboard import write

    records = []
    for k, (seen, content, leak) in enumerate([(8000, 0.05, 0.4), (2000, 0.01, 0.6), (32000, 0.4, 0.02)]):
        r = _record(f"synth3d/lord/seed0-{k:012d}", mse=0.01)
        r["config_hash"] = f"{k:012d}"
        r["timings"] = {"images_seen": seen, "train_seconds": 1.0, "images_per_second": 1.0}
        r["metrics"]["swap"] = {"status": "ok", "values": {"content_accuracy": content, "chance_content": 0.01},
                                "directions": {"content_accuracy": "max", "chance_content": "info"}}
        r["metrics"]["leakage"] = {"status": "ok", "values": {"class_from_content": leak, "chance_class": 0.1},
                                   "directions": {"class_from_content": "min", "chance_class": "info"}}
        records.append(r)
    points = plots.budget_points(records, "synth3d")
    assert points["lord"]["swap: content accuracy"] == [(2000.0, 0.01), (8000.0, 0.05), (32000.0, 0.4)]
    assert points["lord"]["leakage: class ← content"] == [(2000.0, 0.6), (8000.0, 0.4), (32000.0, 0.02)]
    assert "swap: class accuracy" not in points["lord"]  # not measured: no panel
    assert plots.budget_plot(records, "synth3d", tmp_path / "b.png").stat().st_size > 1000
    assert plots.budget_plot(records[:1], "synth3d", tmp_path / "one.png") is None  # one budget: no curve
    failed = dict(records[2], status="failed")
    assert plots.budget_points(records[:2] + [failed], "synth3d")["lord"]["swap: content accuracy"][-1][0] == 8000.0
    page = write(records, tmp_path / "lb").read_text()
    assert "](plots/synth3d-budget.png)" in page and (tmp_path / "lb" / "plots" / "synth3d-budget.png").is_file()
