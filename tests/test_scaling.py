"""Parallel and distributed execution: every executor gives the same records as the plain local
loop; a killed worker leaves the store consistent; resuming continues the loss curve exactly;
2-process data parallelism matches one process with the doubled batch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from disentbench.plugins import load_registries
from disentbench.runner import plan
from disentbench.store import read_records
from conftest import TINY

TESTS = Path(__file__).parent


@pytest.fixture
def plugin_env(monkeypatch):
    """Worker processes load the test plugins the way a user's local plugin is loaded."""
    monkeypatch.setenv("DISENTBENCH_PLUGINS", "testplugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return load_registries()


def _cells(regs, out, methods="tiny-ae-test,lord", seeds=(0, 1), **train):
    overrides = {**TINY, "tiny-ae-test": {"epochs": 2}, "train": train}
    return plan(regs, methods=methods, datasets="synth3d", metrics="transfer_error,reconstruction",
                seeds=seeds, overrides=overrides, out=out, progress=False)


def _results(records):
    """What must not depend on the executor: everything but timings, environment and paths."""
    out = {}
    for r in records:
        r = read_records([Path(r["_dir"]).parent])[0] if "_dir" in r else r
        out[r["run_id"]] = (r["status"], r["config_hash"],
                            {m: e["values"] for m, e in r["metrics"].items()})
    return out


def _executor(regs, name, **options):
    return regs.executors.get(name).build(options)


def _store(out):
    return {r["run_id"]: (r["status"], r["config_hash"], {m: e["values"] for m, e in r["metrics"].items()})
            for r in read_records([out])}


def _same(a, b):
    """The same runs, configurations and metric values. Values agree to float32 rounding, not bit for
    bit: a worker with another number of torch threads sums its reductions in another order."""
    assert {k: v[:2] for k, v in a.items()} == {k: v[:2] for k, v in b.items()}
    for k in a:
        assert a[k][2].keys() == b[k][2].keys(), k
        for metric, values in a[k][2].items():
            assert values == pytest.approx(b[k][2][metric], rel=1e-4, abs=1e-6), (k, metric)
    return True


def test_jobs_2_gives_the_same_records_as_jobs_1(plugin_env, tmp_path):
    regs = plugin_env
    one = _executor(regs, "local", jobs=1).run(_cells(regs, tmp_path / "one"))
    two = _executor(regs, "local", jobs=2).run(_cells(regs, tmp_path / "two"))
    assert [r["status"] for r in one + two] == ["finished"] * 8
    assert _same(_store(tmp_path / "one"), _store(tmp_path / "two"))
    assert len(_store(tmp_path / "two")) == 4


def test_submitit_local_executor_gives_the_same_records(plugin_env, tmp_path):
    import submitit  # noqa: F401  (CI installs it)
    regs = plugin_env
    _executor(regs, "local").run(_cells(regs, tmp_path / "local", seeds=(0,)))
    records = _executor(regs, "slurm", cluster="local", cpus_per_task=1).run(_cells(regs, tmp_path / "slurm", seeds=(0,)))
    assert [r["status"] for r in records] == ["finished", "finished"], records
    assert _same(_store(tmp_path / "local"), _store(tmp_path / "slurm"))
    cell = _cells(regs, tmp_path / "slurm", seeds=(0,))[0]
    config = json.loads((tmp_path / "slurm" / cell.run_id / "config.json").read_text())
    assert config["runtime"]["checkpoint_every"] == 500  # slurm runs checkpoint periodically


def test_ray_executor_gives_the_same_records(plugin_env, tmp_path):
    import ray  # noqa: F401  (CI installs it)
    regs = plugin_env
    _executor(regs, "local").run(_cells(regs, tmp_path / "local", methods="tiny-ae-test"))
    records = _executor(regs, "ray", num_cpus=2).run(_cells(regs, tmp_path / "ray", methods="tiny-ae-test"))
    assert [r["status"] for r in records] == ["finished", "finished"], records
    assert _same(_store(tmp_path / "local"), _store(tmp_path / "ray"))


def test_a_rerun_skips_cells_another_executor_finished(plugin_env, tmp_path):
    regs = plugin_env
    _executor(regs, "local", jobs=2).run(_cells(regs, tmp_path / "runs", methods="tiny-ae-test"))
    again = _executor(regs, "local").run(_cells(regs, tmp_path / "runs", methods="tiny-ae-test"))
    assert all(r.get("_skipped") and r["status"] == "finished" for r in again)


def test_a_worker_killed_mid_run_then_rerun_completes_cleanly(tmp_path):
    env = {**os.environ, "DISENTBENCH_PLUGINS": "testplugins",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    sets = []
    for scope, table in {**TINY, "lord": {**TINY["lord"], "epochs": 40}, "train": {"checkpoint_every": 1}}.items():
        sets += [x for k, v in table.items() for x in ("--set", f"{scope}.{k}={json.dumps(v)}")]
    args = [sys.executable, "-m", "disentbench.cli", "run", "--methods", "lord,tiny-ae-test", "--datasets", "synth3d",
            "--metrics", "reconstruction", "--seeds", "0", "--device", "cpu", "--out", str(tmp_path / "runs"),
            "--no-leaderboard", "--quiet", *sets]
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((tmp_path / "runs").glob("synth3d/lord/*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: lock, checkpoint and partial files stay
    proc.wait()
    run_dir = next((tmp_path / "runs").glob("synth3d/lord/*"))
    assert (run_dir / "lock").exists() and not (run_dir / "record.json").exists()
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    records = read_records([tmp_path / "runs"])
    assert sorted(r["method"] for r in records) == ["lord", "tiny-ae-test"]
    assert all(r["status"] == "finished" for r in records)
    lord = next(r for r in records if r["method"] == "lord")
    assert lord["timings"]["resumed_from_step"] > 0
    steps = [(row["stage"], row["step"]) for row in map(json.loads, (run_dir / "train_log.jsonl").read_text().splitlines())]
    latent = [s for stage, s in steps if stage == "latent"]
    assert len(steps) == len(set(steps)) and latent == list(range(1, len(latent) + 1))  # no step lost or repeated
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / "lock").exists()


def test_a_resumed_run_continues_its_loss_curve_exactly(tmp_path):
    """Interrupted at step 4 and resumed from the checkpoint, the loss curve equals the
    uninterrupted one step for step (the sampler, the noise generator and the optimiser resume)."""
    import testplugins
    from disentbench.runner import execute

    regs = load_registries(plugins=[testplugins])
    marker = tmp_path / "marker"
    base = {**TINY["lord"], "epochs": 3}
    over = {**TINY, "interrupted": {**base, "interrupt_at": 4, "marker": str(marker)},
            "train": {"checkpoint_every": 1}}
    [cell] = plan(regs, methods="interrupted", datasets="synth3d", metrics="reconstruction", seeds=[0],
                  overrides=over, out=tmp_path / "a", progress=False)
    with pytest.raises(KeyboardInterrupt):
        execute(cell, regs)
    execute(cell, regs)
    marker.write_text("already interrupted")  # the reference run is not interrupted
    [ref] = plan(regs, methods="interrupted", datasets="synth3d", metrics="reconstruction", seeds=[0],
                 overrides=over, out=tmp_path / "b", progress=False)
    execute(ref, regs)
    log = lambda root, c: [json.loads(x) for x in (root / c.run_id / "train_log.jsonl").read_text().splitlines()]
    resumed, reference = log(tmp_path / "a", cell), log(tmp_path / "b", ref)
    assert [r["loss"] for r in resumed] == [r["loss"] for r in reference]


@pytest.mark.parametrize("method", ["tinyae", "two-optimizers", "chunked"])
def test_two_process_gloo_ddp_matches_one_process_with_the_doubled_batch(tmp_path, method):
    """torch's DistributedDataParallel (one wrapper per set of optimizers an update steps) on two
    gloo processes ends where one process on the same global batch ends."""
    cache = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(TESTS / "ddp_worker.py"), str(tmp_path / "one.pt"), "16", str(cache),
                             method], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(TESTS / "ddp_worker.py"), str(tmp_path / "two.pt"), "8", str(cache), method],
                         env=env, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert two["world"] == 2 and one["world"] == 1 and one["images"] == two["images"]
    assert one["ddp_wrappers"] == 0 and two["ddp_wrappers"] == (2 if method == "two-optimizers" else 1)
    if method == "chunked":  # train.micro_batch 4: 4 chunks of the batch of 16, 2 of each rank's 8
        assert set(one["chunks"]) == {4.0} and set(two["chunks"]) == {2.0}
    worst = max(float((one["state"][k] - two["state"][k]).abs().max()) for k in one["state"])
    assert worst < 1e-4, f"parameters differ by {worst} after data-parallel training"


def test_speed_benchmark_reports_every_option_against_the_baseline(tmp_path, monkeypatch):
    """benchmarks/speed.py runs the real training step per option set and writes its table as JSON."""
    monkeypatch.setenv("DISENTBENCH_PLUGINS", "testplugins")
    from disentbench_benchmarks import speed

    out = tmp_path / "speed.json"
    assert speed.main(["--methods", "tiny-ae-test", "--options", "fp32,channels_last,bf16", "--steps", "2",
                       "--warmup", "1", "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {r["option"]: r for r in result["training"]}
    assert set(rows) == {"fp32", "channels_last", "bf16"}
    assert rows["fp32"]["speedup"] == 1.0
    for r in rows.values():
        assert r["images_per_second"] > 0 and r["flops_per_image"] > 0 and 0 < r["mfu"]
        assert r["achieved_flops"] == pytest.approx(r["flops_per_image"] * r["images_per_second"])
    assert result["matmul_peak_fp32"] > 0
