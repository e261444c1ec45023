"""Fault injection on the run store: corrupt records, checkpoints and states; lock takeovers raced by
several processes; a worker paused past the stale limit; parallel cache builds; a worker that dies
under --jobs. Each test injects the fault and checks that nothing stops, nothing is lost, and the
warning names the file."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from disentbench import config as cfg
from disentbench.plugins import load_registries
from disentbench.runner import execute, plan
from disentbench.store import LockLost, RunDir, RunLock, guard, read_records

import faultworkers
import testplugins

TESTS = Path(__file__).parent
SPAWN = mp.get_context("spawn")


@pytest.fixture
def regs():
    return load_registries(plugins=[testplugins])


def _cell(regs, tiny, out, method="tiny-ae-test", seed=0, metrics="reconstruction", **over):
    overrides = {"synth3d": tiny["synth3d"], "eval": tiny["eval"], "tiny-ae-test": {"epochs": 1}, **over}
    [cell] = plan(regs, methods=method, datasets="synth3d", metrics=metrics, seeds=[seed], overrides=overrides,
                  out=out, progress=False)
    return cell


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory):
    """A store holding one finished tiny run (trained once per module, copied by each test)."""
    from conftest import TINY

    regs = load_registries(plugins=[testplugins])
    out = tmp_path_factory.mktemp("finished") / "runs"
    cell = _cell(regs, {k: dict(v) for k, v in TINY.items()}, out)
    record = execute(cell, regs)
    assert record["status"] == "finished", record["error"]
    return out, cell


def _copy(finished_store, tmp_path):
    src, cell = finished_store
    shutil.copytree(src, tmp_path / "runs")
    cell = type(cell).from_json({**cell.to_json(), "out": str(tmp_path / "runs")})
    return cell, tmp_path / "runs" / cell.run_id


CORRUPTIONS = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: b"\x00\xffnot what was written\x13" * 3,
}


def _aside(run_dir, name):
    return sorted(run_dir.glob(f"{name}.corrupt-*"))


# -- corrupt files ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [*CORRUPTIONS, "schema"])
def test_a_corrupt_record_is_moved_aside_and_the_cell_rerun(regs, finished_store, tmp_path, capsys, kind):
    cell, run_dir = _copy(finished_store, tmp_path)
    path = run_dir / "record.json"
    good = path.read_bytes()
    bad = json.dumps({"status": "finished", "method": 3}).encode() if kind == "schema" else CORRUPTIONS[kind](good)
    path.write_bytes(bad)
    record = execute(cell, regs)  # not a traceback: the run is redone (its trained state is reused)
    assert record["status"] == "finished" and not record.get("_skipped")
    [aside] = _aside(run_dir, "record.json")
    assert aside.read_bytes() == bad  # kept, for inspection
    err = capsys.readouterr().err
    assert f"warning: {path} is unusable" in err and aside.name in err
    assert json.loads(path.read_text())["status"] == "finished"


def test_the_leaderboard_moves_a_corrupt_record_aside_and_renders_the_rest(finished_store, tmp_path, capsys):
    from disentbench.cli import main

    cell, run_dir = _copy(finished_store, tmp_path)
    other = run_dir.parent / "seed7-0123456789ab"
    other.mkdir()
    (other / "record.json").write_text('{"status": "finished", "run_id": "x", "metr')  # truncated
    newer = run_dir.parent / "seed8-0123456789ab"
    newer.mkdir()
    (newer / "record.json").write_text(json.dumps({**json.loads((run_dir / "record.json").read_text()),
                                                   "schema_version": 99}))
    assert main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb")]) == 0
    err = capsys.readouterr().err
    assert f"{other / 'record.json'} is unusable (not valid JSON" in err
    assert "schema 99, newer than this disentbench understands" in err and "left out" in err
    assert _aside(other, "record.json") and (newer / "record.json").exists()  # a newer record is not corrupt
    assert "| tiny-ae-test" in (tmp_path / "lb" / "README.md").read_text()
    assert [r["run_id"] for r in read_records([tmp_path / "runs"])] == [cell.run_id]


def _interrupted(regs, tiny, tmp_path):
    marker = tmp_path / "marker"
    over = {"interrupted": {**tiny["lord"], "interrupt_at": 4, "marker": str(marker)},
            "train": {"checkpoint_every": 1}}
    cell = _cell(regs, tiny, tmp_path / "runs", method="interrupted", **over)
    with pytest.raises(KeyboardInterrupt):
        execute(cell, regs)
    return cell, tmp_path / "runs" / cell.run_id


@pytest.mark.parametrize("kind", ["truncated", "schema"])
def test_a_corrupt_checkpoint_is_moved_aside_and_training_restarts(regs, tiny, tmp_path, capsys, kind):
    cell, run_dir = _interrupted(regs, tiny, tmp_path)
    path = run_dir / "checkpoint.pt"
    if kind == "schema":
        torch.save({"method": {}, "position": "somewhere"}, path)
    else:
        path.write_bytes(CORRUPTIONS[kind](path.read_bytes()))
    bad = path.read_bytes()
    record = execute(cell, regs)
    assert record["status"] == "finished", record["error"]
    assert record["timings"]["resumed_from_step"] == 0  # nothing usable to resume from: from the start
    [aside] = _aside(run_dir, "checkpoint.pt")
    assert aside.read_bytes() == bad
    err = capsys.readouterr().err
    assert f"{path} is unusable" in err and ("cannot be loaded" in err or "not a checkpoint" in err)
    log = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    latent = [r["step"] for r in log if r["stage"] == "latent"]
    assert latent == list(range(1, len(latent) + 1))


@pytest.mark.parametrize("kind", ["empty", "garbage"])
def test_a_corrupt_saved_state_is_moved_aside_and_the_run_trains_again(regs, finished_store, tmp_path, capsys,
                                                                       monkeypatch, kind):
    cell, run_dir = _copy(finished_store, tmp_path)
    record = json.loads((run_dir / "record.json").read_text())
    (run_dir / "record.json").write_text(json.dumps({**record, "status": "failed"}))  # evaluation had failed
    path = run_dir / "state.pt"
    path.write_bytes(CORRUPTIONS[kind](path.read_bytes()))
    from testplugins import TinyAE

    fits = []
    original = TinyAE.fit
    monkeypatch.setattr(TinyAE, "fit", lambda self, *a, **k: fits.append(1) or original(self, *a, **k))
    again = execute(cell, regs)
    assert again["status"] == "finished", again["error"]
    assert fits == [1] and _aside(run_dir, "state.pt") and f"{path} is unusable" in capsys.readouterr().err
    torch.load(path, weights_only=True)  # a good state again


def test_a_sibling_whose_state_does_not_load_is_not_adopted(regs, tiny, finished_store, tmp_path, capsys):
    cell, run_dir = _copy(finished_store, tmp_path)
    (run_dir / "state.pt").write_bytes(b"")  # the finished run's saved training is corrupt
    sibling = _cell(regs, tiny, tmp_path / "runs", metrics="transfer_error")  # differs only in metrics
    assert sibling.run_id != cell.run_id and sibling.run_id.rsplit("-", 1)[0] == cell.run_id.rsplit("-", 1)[0]
    record = execute(sibling, regs)
    assert record["status"] == "finished", record["error"]
    sibling_dir = tmp_path / "runs" / sibling.run_id
    assert "trained_in" not in json.loads((sibling_dir / "train_summary.json").read_text())
    assert not _aside(sibling_dir, "state.pt")  # the corrupt file was never copied in
    assert f"not reusing the training of {run_dir}" in capsys.readouterr().err


# -- locks --------------------------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("owner", ["dead-here", "silent-elsewhere"])
def test_racing_processes_take_over_a_stale_lock_exactly_once(tmp_path, owner):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if owner == "dead-here":
        content = {"host": socket.gethostname(), "pid": _dead_pid(), "start": None, "token": "old"}
    else:
        content = {"host": "another-node", "pid": os.getpid(), "start": None, "token": "old"}
    (run_dir / "lock").write_text(json.dumps(content))
    os.utime(run_dir / "lock", (time.time() - 3600, time.time() - 3600))
    n = 6
    barrier, results = SPAWN.Barrier(n), SPAWN.Queue()
    procs = [SPAWN.Process(target=faultworkers.take_lock, args=(str(run_dir), 60.0, barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    outcome = [results.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(60)
    winners = [o for o in outcome if o[1]]
    assert len(winners) == 1, outcome
    assert json.loads((run_dir / "lock").read_text())["token"] == winners[0][2]
    assert not (run_dir / "lock.takeover").exists()


def test_an_empty_lock_is_judged_by_its_age(tmp_path):
    rd = RunDir(tmp_path)
    (tmp_path / "lock").write_bytes(b"")  # its writer may still be writing it
    assert not RunLock(rd, stale_after=60).acquire()
    old = time.time() - 120
    os.utime(tmp_path / "lock", (old, old))
    lock = RunLock(rd, stale_after=60)
    assert lock.acquire()
    lock.release()


def test_a_takeover_left_half_done_by_a_dead_taker_does_not_block_the_cell(tmp_path):
    rd = RunDir(tmp_path)
    dead = json.dumps({"host": socket.gethostname(), "pid": _dead_pid()})
    (tmp_path / "lock").write_text(dead)
    (tmp_path / "lock.takeover").write_text(dead)  # its taker died between creating and removing it
    lock = RunLock(rd)
    assert lock.acquire() and lock.mine() and not (tmp_path / "lock.takeover").exists()
    lock.release()
    assert not (tmp_path / "lock").exists()


def test_a_live_owner_on_this_host_is_never_displaced(tmp_path):
    rd = RunDir(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (tmp_path / "lock").write_text(json.dumps({"host": socket.gethostname(), "pid": sleeper.pid}))
        old = time.time() - 3600  # paused for an hour: no heartbeat
        os.utime(tmp_path / "lock", (old, old))
        assert not RunLock(rd, stale_after=1).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert RunLock(rd, stale_after=1).acquire()  # gone now: taken over at once
    # a live pid that belongs to another process than the one that wrote the lock (pid reused)
    (tmp_path / "lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start": "0"}))
    assert RunLock(rd, stale_after=3600).acquire()


def test_a_lock_is_released_only_by_its_owner_who_notices_losing_it(tmp_path):
    rd = RunDir(tmp_path)
    lock = RunLock(rd, heartbeat=3600)
    assert lock.acquire()
    guard(tmp_path / "record.json")  # ours: fine
    other = json.dumps({"host": "another-node", "pid": 1, "token": "theirs"})
    (tmp_path / "lock").write_text(other)  # it was taken over while this process was paused
    with pytest.raises(LockLost, match="another-node pid 1"):
        guard(tmp_path / "checkpoint.pt")
    lock.release()
    assert (tmp_path / "lock").read_text() == other  # not ours to delete


def test_a_worker_paused_past_the_stale_limit_stops_its_cell_without_writing(regs, tiny, tmp_path, monkeypatch,
                                                                             capsys):
    """While this worker trains, another takes its lock over (as after a pause on a preempted node):
    the next checkpoint write notices, the cell is reported lost (not failed) and nothing is written."""
    from disentbench_plugins.methods.lord import LORD

    cell = _cell(regs, tiny, tmp_path / "runs", method="lord", lord=tiny["lord"], train={"checkpoint_every": 1})
    run_dir = tmp_path / "runs" / cell.run_id
    other = json.dumps({"host": "another-node", "pid": 1, "token": "theirs"})
    original = LORD._latent_step

    def step(self, batch, ctx):
        if ctx.step == 2:
            (run_dir / "lock").write_text(other)
        return original(self, batch, ctx)

    monkeypatch.setattr(LORD, "_latent_step", step)
    record = execute(cell, regs)
    assert record["status"] == "lost" and "another-node pid 1" in record["reason"]
    assert (run_dir / "lock").read_text() == other
    assert not (run_dir / "record.json").exists() and not (run_dir / "state.pt").exists()
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["position"][3] == 2  # the last write was before the takeover
    assert "its lock is now held by another-node pid 1" in capsys.readouterr().err


# -- caches -------------------------------------------------------------------------------------

@pytest.mark.parametrize("worker", [faultworkers.build_cache, faultworkers.load_synth3d])
def test_two_processes_building_the_same_cache_at_once_both_succeed(tmp_path, worker):
    barrier, results = SPAWN.Barrier(2), SPAWN.Queue()
    procs = [SPAWN.Process(target=worker, args=(str(tmp_path / "cache"), 4, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcome = [results.get(timeout=300) for _ in range(2)]
    for p in procs:
        p.join(60)
    assert outcome == ["ok", "ok"]
    assert not [p for p in (tmp_path / "cache").iterdir() if ".tmp" in p.name or "incomplete" in p.name]


def test_a_cache_another_worker_published_meanwhile_is_kept(tmp_path, monkeypatch):
    """While this process renders synth3d, a parallel worker publishes the same cache and starts
    reading it: this process must use that copy, never remove it under the reader."""
    from disentbench_plugins.datasets.synth3d import Synth3D, Synth3DConfig

    config = Synth3DConfig(resolution=16, n_train_classes=3, n_test_classes=2, n_azimuths=2, n_elevations=1)
    Synth3D(config).load(tmp_path / "other", tmp_path / "other", progress=False)
    [theirs] = [p for p in (tmp_path / "other").glob("synth3d-*") if p.is_dir()]
    original = Synth3D.generate

    def generate(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        shutil.copytree(theirs, tmp_path / "cache" / theirs.name)  # the other worker finished first
        (tmp_path / "cache" / theirs.name / "reader-has-it-open").write_text("")
        return out

    monkeypatch.setattr(Synth3D, "generate", generate)
    bundle = Synth3D(config).load(tmp_path / "cache", tmp_path / "cache", progress=False)
    assert (tmp_path / "cache" / theirs.name / "reader-has-it-open").exists()
    assert len(bundle.train.images) == 6
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()] == [theirs.name]  # ours discarded


def test_an_incomplete_cache_entry_in_the_way_is_replaced(tmp_path):
    import numpy as np

    from disentbench.datacache import ArrayCache

    cache = ArrayCache(tmp_path, "x", "k")
    cache.path.mkdir()
    (cache.path / "a.npy").write_bytes(b"half")  # a crash before meta.json
    with cache.build() as writer:
        writer.save("a", np.arange(3))
    assert cache.load().arrays["a"].tolist() == [0, 1, 2]


def test_the_sweep_summary_lists_each_failed_cell_and_why(tmp_path, monkeypatch, capsys, tiny):
    from disentbench.cli import main

    monkeypatch.setenv("DISENTBENCH_PLUGINS", "testplugins")
    sets = [x for k, v in tiny["synth3d"].items() for x in ("--set", f"synth3d.{k}={v}")]
    code = main(["run", "--methods", "failing", "--datasets", "synth3d", "--metrics", "reconstruction", "--seeds",
                 "0", "--out", str(tmp_path / "runs"), "--no-leaderboard", "--quiet", *sets])
    out = capsys.readouterr().out
    assert code == 1
    assert "  failed: failing on synth3d seed 0: RuntimeError: this method always fails (test plugin)" in out


# -- worker death under --jobs --------------------------------------------------------------------

def test_a_dying_worker_fails_only_its_own_cell(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("DISENTBENCH_PLUGINS", "testplugins,dyingplugin")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    regs = load_registries()
    cells = plan(regs, methods="dying-test", datasets="synth3d", metrics="reconstruction", seeds=[0, 1, 2],
                 overrides={"synth3d": tiny["synth3d"], "eval": tiny["eval"]}, out=tmp_path / "runs", progress=False)
    target = regs.executors.get("local").load()
    lines = []
    records = target(cfg.build(target.Config, {"jobs": 2})).run(
        cells, report=lambda k, n, cell, r: lines.append((cell.seed, r["status"])))
    status = {r["seed"]: r["status"] for r in records}
    assert status == {0: "finished", 1: "failed", 2: "finished"}, records
    dead = next(r for r in records if r["seed"] == 1)
    assert dead["error"]["type"] == "WorkerDied" and "exit code 1" in dead["error"]["message"]
    assert sorted(lines) == [(0, "finished"), (1, "failed"), (2, "finished")]  # each reported once
    on_disk = {r["seed"]: r["status"] for r in read_records([tmp_path / "runs"])}
    assert on_disk == status  # the death is on record, for the leaderboard and the next rerun
