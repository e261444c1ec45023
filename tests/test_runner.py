from __future__ import annotations

import json

import pytest

from disentbench.plugins import load_registries
from disentbench.runner import PlanError, execute, plan, run_sweep
from disentbench.store import RECORD_SCHEMA, SCHEMA_VERSION, read_records

import testplugins


@pytest.fixture
def regs():
    return load_registries(plugins=[testplugins])


def _cells(regs, tmp_path, tiny, methods, **over):
    overrides = {k: v for k, v in tiny.items()}
    overrides.update(over.pop("overrides", {}))
    return plan(regs, methods=methods, datasets="synth3d", metrics=over.pop("metrics", "transfer_error,reconstruction"),
                seeds=over.pop("seeds", [0]), overrides=overrides, out=tmp_path / "runs", progress=False, **over)


def test_plan_rejects_unknown_names_and_options(regs, tmp_path, tiny):
    with pytest.raises(Exception, match="Did you mean 'lord'"):
        _cells(regs, tmp_path, tiny, "lrod")
    with pytest.raises(PlanError, match="Did you mean 'lord'"):
        _cells(regs, tmp_path, tiny, "lord", overrides={"lrod": {"epochs": 1}})
    with pytest.raises(Exception, match="unknown option.*epoch"):
        _cells(regs, tmp_path, tiny, "lord", overrides={"lord": {"epoch": 1}})
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_a_failing_method_does_not_stop_the_sweep(regs, tmp_path, tiny):
    cells = _cells(regs, tmp_path, tiny, "failing,lord")
    records = run_sweep(cells, regs)
    status = {r["method"]: r["status"] for r in records}
    assert status == {"failing": "failed", "lord": "finished"}
    failed = next(r for r in records if r["method"] == "failing")
    assert "always fails" in failed["error"]["message"] and "Traceback" in failed["error"]["traceback"]


def test_record_schema_and_run_directory(regs, tmp_path, tiny):
    [cell] = _cells(regs, tmp_path, tiny, "lord")
    record = execute(cell, regs)
    assert record["status"] == "finished", record["error"]
    assert set(RECORD_SCHEMA) <= set(record) and record["schema_version"] == SCHEMA_VERSION
    run_dir = tmp_path / "runs" / cell.run_id
    for name in ("config.json", "env.json", "metrics.json", "record.json", "train_log.jsonl", "state.pt", "transfer.png"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "checkpoint.pt").exists() and not (run_dir / "lock").exists()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config_hash"] == cell.config_hash == record["config_hash"]
    assert config["config"]["method"]["epochs"] == 2 and config["config"]["dataset"]["resolution"] == 32
    assert record["versions"]["plugins"]["method:lord"]["distribution"] == "disentbench"
    assert record["metrics"]["transfer_error"]["status"] == "ok"
    assert record["timings"]["images_per_second"] > 0 and record["env"]["device"] == "cpu"
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert log and all("loss" in row for row in log)


def test_finished_runs_are_skipped(regs, tmp_path, tiny, monkeypatch):
    [cell] = _cells(regs, tmp_path, tiny, "lord")
    first = execute(cell, regs)
    from disentbench_plugins.methods.lord import LORD

    monkeypatch.setattr(LORD, "fit", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = execute(cell, regs)
    assert again["_skipped"] and again["run_id"] == first["run_id"]


def test_an_interrupted_run_resumes_from_its_checkpoint(regs, tmp_path, tiny):
    marker = tmp_path / "interrupted.marker"
    overrides = {"interrupted": {**tiny["lord"], "interrupt_at": 4, "marker": str(marker)},
                 "train": {"checkpoint_every": 1}}
    [cell] = _cells(regs, tmp_path, tiny, "interrupted", overrides=overrides)
    with pytest.raises(KeyboardInterrupt):
        execute(cell, regs)
    run_dir = tmp_path / "runs" / cell.run_id
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "record.json").exists()
    assert not (run_dir / "lock").exists()  # released on the way out
    record = execute(cell, regs)
    assert record["status"] == "finished", record["error"]
    assert record["timings"]["resumed_from_step"] == 3
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    steps = [(r["stage"], r["step"]) for r in log]
    assert len(steps) == len(set(steps))  # no step twice
    latent = [s for stage, s in steps if stage == "latent"]
    assert latent == list(range(1, len(latent) + 1))  # and none missing


def test_a_failed_run_is_retried_and_its_record_kept(regs, tmp_path, tiny):
    [cell] = _cells(regs, tmp_path, tiny, "failing")
    execute(cell, regs)
    execute(cell, regs)
    run_dir = tmp_path / "runs" / cell.run_id
    assert (run_dir / "attempts" / "record-1.json").is_file()
    assert len(read_records([tmp_path / "runs"])) == 1  # attempts are history, not results


def test_a_metric_crash_keeps_the_trained_state(regs, tmp_path, tiny, monkeypatch):
    [cell] = _cells(regs, tmp_path, tiny, "lord", metrics="reconstruction")
    from disentbench_plugins.metrics.reconstruction import Reconstruction

    original = Reconstruction.compute
    monkeypatch.setattr(Reconstruction, "compute", lambda self, ctx: 1 / 0)
    record = execute(cell, regs)
    assert record["status"] == "failed" and "reconstruction" in record["error"]["message"]
    monkeypatch.setattr(Reconstruction, "compute", original)
    from disentbench_plugins.methods.lord import LORD

    monkeypatch.setattr(LORD, "fit", lambda *a, **k: pytest.fail("retrained although the state was saved"))
    record = execute(cell, regs)
    assert record["status"] == "finished"


def test_seeds_are_separate_runs_and_reproducible(regs, tmp_path, tiny):
    cells = _cells(regs, tmp_path, tiny, "lord", seeds=[0, 1], metrics="reconstruction")
    a = run_sweep(cells, regs)
    again = _cells(regs, tmp_path / "again", tiny, "lord", seeds=[0], metrics="reconstruction")
    b = run_sweep(again, regs)
    assert a[0]["metrics"]["reconstruction"]["values"] == b[0]["metrics"]["reconstruction"]["values"]
    assert a[0]["metrics"]["reconstruction"]["values"] != a[1]["metrics"]["reconstruction"]["values"]
