"""The Slurm executor against a real single-node Slurm that these tests start themselves: Debian's
munge, slurmctld and slurmd (installed with apt-get when missing and we are root), a minimal
slurm.conf in a temporary directory, every daemon stopped at the end. Skipped only where the
packages are missing and cannot be installed."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from disentbench.cli import main
from disentbench.store import read_records
from conftest import TINY

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
PROGRAMS = ["munged", "munge", "slurmctld", "slurmd", "sinfo", "sbatch", "srun", "squeue", "scontrol", "scancel"]
START_TIMEOUT_S = 60


def _missing() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]


def _install() -> None:
    """apt-get the packages when they are missing; skip (saying why) where that cannot be done."""
    if not _missing():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"Slurm is not installed ({', '.join(_missing())} missing) and cannot be installed here: "
                    f"installing {' '.join(PACKAGES)} needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    t0 = time.perf_counter()
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
            pytest.skip(f"Slurm is not installed and `{' '.join(cmd)}` failed, so it cannot be installed here: {tail}")
    print(f"installed {' '.join(PACKAGES)} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if _missing():
        pytest.skip(f"apt-get installed {' '.join(PACKAGES)} but {', '.join(_missing())} are still missing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_size() -> tuple[int, int]:
    """CPUs and memory (MB) of this machine as slurmd sees them (``slurmd -C``), so that the node's
    configuration matches what slurmd detects; /proc/meminfo and os.cpu_count() otherwise."""
    proc = subprocess.run(["slurmd", "-C"], capture_output=True, text=True)
    found = dict(tok.split("=", 1) for tok in proc.stdout.split() if "=" in tok)
    if found.get("CPUs", "").isdigit() and found.get("RealMemory", "").isdigit():
        return int(found["CPUs"]), int(found["RealMemory"])
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return os.cpu_count() or 1, int(line.split()[1]) // 1024
    return os.cpu_count() or 1, 1024


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as exc:
        return f"({exc})"


class Cluster:
    """munged + slurmctld + slurmd for one node, all files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.socket = root / "munge" / "munge.socket"
        self.pids = {"munged": root / "munge" / "munged.pid", "slurmctld": root / "slurmctld.pid",
                     "slurmd": root / "slurmd.pid"}
        self.logs = {"munged": root / "munge" / "munged.log", "slurmctld": root / "slurmctld.log",
                     "slurmd": root / "slurmd.log"}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.cpus, self.mem_mb = _node_size()

    def write_config(self) -> None:
        r = self.root
        for d in ("munge", "state", "spool"):
            (r / d).mkdir(mode=0o755, exist_ok=True)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(f"""\
ClusterName=disentbench
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={self.pids['slurmctld']}
SlurmdPidFile={self.pids['slurmd']}
SlurmctldLogFile={self.logs['slurmctld']}
SlurmdLogFile={self.logs['slurmd']}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=60 State=UP
""")

    def start(self) -> None:
        m = self.root / "munge"
        self._daemon(["munged", "--force", f"--key-file={m / 'munge.key'}", f"--socket={self.socket}",
                      f"--pid-file={self.pids['munged']}", f"--log-file={self.logs['munged']}",
                      f"--seed-file={m / 'munged.seed'}"])
        self._daemon(["slurmctld", "-f", str(self.conf)])
        self._daemon(["slurmd", "-f", str(self.conf)])
        deadline = time.monotonic() + START_TIMEOUT_S
        state = ""
        while time.monotonic() < deadline:
            proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            state = (proc.stdout + proc.stderr).strip()
            if proc.returncode == 0 and state == "idle":
                return
            time.sleep(1)
        logs = "\n".join(f"--- {name} ({path}):\n{_tail(path)}" for name, path in self.logs.items())
        pytest.fail(f"the test Slurm did not come up within {START_TIMEOUT_S} s (sinfo says {state!r}):\n{logs}",
                    pytrace=False)

    def _daemon(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60)
        if proc.returncode != 0:
            name = Path(cmd[0]).name
            pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}\n"
                        f"--- {self.logs[name]}:\n{_tail(self.logs[name])}", pytrace=False)

    def stop(self) -> None:
        """Cancel every job, then stop the daemons by their pid files (slurmd, slurmctld, munged)."""
        subprocess.run(["scancel", "--full", "--user", "root"], capture_output=True, env=self.env, timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            proc = subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=self.env, timeout=60)
            if proc.returncode != 0 or not proc.stdout.strip():
                break
            time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            try:
                pid = int(self.pids[name].read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            _terminate(pid)


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def slurm():
    """A running single-node Slurm; SLURM_CONF points every Slurm command (and submitit) at it."""
    _install()
    root = Path(tempfile.mkdtemp(prefix="dbslurm-"))  # short: munge's socket path must fit sun_path
    cluster = Cluster(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(cluster.conf))
        try:
            cluster.write_config()
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)


def _sets(tiny: dict, **extra) -> list[str]:
    out = []
    for scope, table in {**tiny, **extra}.items():
        for key, value in table.items():
            out += ["--set", f"{scope}.{key}={json.dumps(value)}"]
    return out


def _run_args(out: Path, *sets: str, seeds: str = "0,1") -> list[str]:
    return ["run", "--methods", "lord", "--datasets", "synth3d", "--metrics", "reconstruction", "--seeds", seeds,
            "--device", "cpu", "--out", str(out / "runs"), "--leaderboard", str(out / "lb"), "--quiet",
            "--executor", "slurm", "--set", "slurm.poll_s=1", *sets]


def test_two_cell_sweep_finishes_on_real_slurm(slurm, tmp_path, capsys):
    """A two-cell sweep finishes; each cell takes every CPU of the node, so the second waits and
    the wait shows its pending reason and then its state instead of silence."""
    assert main(_run_args(tmp_path, "--set", f"slurm.cpus_per_task={slurm.cpus}", *_sets(TINY))) == 0
    out = capsys.readouterr().out
    records = read_records([tmp_path / "runs"])
    assert sorted((r["seed"], r["status"]) for r in records) == [(0, "finished"), (1, "finished")], out
    assert "through submitit (slurm)" in out
    assert re.search(r"seed \d \(job \d+_\d\): pending: \w+", out), out  # the watcher's state lines
    assert re.search(r"seed \d \(job \d+_\d\): running", out), out
    assert "| lord" in (tmp_path / "lb" / "README.md").read_text()


def test_impossible_request_fails_at_once_with_the_partition_limits(slurm, tmp_path, capsys):
    """A request no node of the partition can hold is one line naming it and the partition's
    limits, before anything is submitted (Slurm itself would leave it pending forever)."""
    too_many = slurm.cpus + 1
    assert main(_run_args(tmp_path, "--set", f"slurm.cpus_per_task={too_many}", *_sets(TINY))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"cpus_per_task={too_many}," in err and "partition 'debug'" in err, err
    assert f"at most {slurm.cpus} CPUs" in err and "MaxTime 60 min" in err and "lower slurm.cpus_per_task" in err
    assert main(_run_args(tmp_path, "--set", "slurm.time_min=120", *_sets(TINY))) == 2
    assert "time_min=120" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing submitted: submitit's folder lives under --out


def test_a_cell_slurm_will_never_start_fails_with_its_pending_reason(slurm, tmp_path, capsys):
    """A request past the partition's limits that gets by the check (here through slurm.extra)
    pends in Slurm with a reason that never clears: the cell is cancelled and failed, naming it."""
    args = _run_args(tmp_path, "--set", "slurm.extra={timeout_min=120}", *_sets(TINY), seeds="0")
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.update(rc=main(args)), daemon=True)
    thread.start()
    thread.join(timeout=120)  # without the check it would wait forever
    out = capsys.readouterr().out
    assert result.get("rc") == 1, out
    reason = re.search(r"\(job \d+\): pending: (Partition(Config|TimeLimit))\n", out)  # 22.05 says Config
    assert reason, out
    assert "[1/1] lord on synth3d seed 0: failed — SlurmJobError: slurm job" in out, out
    assert f"can never start (pending reason {reason.group(1)})" in out, out
    job = next(p.name for p in (tmp_path / "runs" / ".submitit").glob("*") if p.is_dir())
    queue = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()
    assert queue in ("", "CANCELLED", "COMPLETING"), queue  # cancelled, not left pending


def test_defaults_fit_the_partition(slurm):
    """Options left at 0 take what the partition holds: at most its CPUs, memory and MaxTime (the old
    fixed 4 CPUs, 32 GB and 240 min pended forever on a small node)."""
    from disentbench_plugins.executors.slurm import SlurmConfig, fit_request, query_partition

    partition = query_partition()
    node = partition.nodes[0]
    assert (partition.name, partition.max_time_min, node.cpus) == ("debug", 60, slurm.cpus)
    request = fit_request(SlurmConfig(), partition)
    assert request.cpus == min(4, node.cpus) and request.time_min == 60 and request.gpus == 0
    assert 0 < request.mem_mb <= node.mem_mb


def _running_job(folder: Path, deadline: float) -> str:
    """The id of the one job submitted with its logs under ``folder`` (submitit's ``%j``), once it runs."""
    while time.monotonic() < deadline:
        ids = [p.name for p in folder.glob("*") if p.is_dir()]
        if ids:
            state = subprocess.run(["squeue", "-h", "-j", ids[0], "-o", "%T"], capture_output=True, text=True)
            if state.stdout.strip() == "RUNNING":
                return ids[0]
        time.sleep(0.2)
    pytest.fail("the job never started running", pytrace=False)


def _task_pids(folder: str) -> list[int]:
    """The processes running a submitit task whose logs are under ``folder``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if "submitit.core._submit" in cmdline and folder in cmdline:
            pids.append(int(proc.name))
    return pids


def test_preempted_cell_is_requeued_and_resumes_from_its_checkpoint(slurm, tmp_path, capsys):
    """`scancel --signal=USR2` (what Slurm sends before preempting) mid-training: submitit requeues
    the task, the rerun resumes from the run's checkpoint, and the cell finishes once."""
    lord = {**TINY["lord"], "epochs": 6}
    args = _run_args(tmp_path, "--set", "slurm.checkpoint_every=2", *_sets({**TINY, "lord": lord}), seeds="0")
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.update(rc=main(args)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    job = _running_job(tmp_path / "runs" / ".submitit", deadline)
    while not list((tmp_path / "runs").glob("**/checkpoint.pt")):
        assert time.monotonic() < deadline and thread.is_alive(), "training never wrote a checkpoint"
        time.sleep(0.02)
    # freeze the task so that the signal lands mid-training however fast this machine trains
    tasks = _task_pids(str(tmp_path))
    assert tasks, "no submitit task process found"
    for pid in tasks:
        os.kill(pid, signal.SIGSTOP)
    try:
        assert list((tmp_path / "runs").glob("**/checkpoint.pt")), "training finished before it could be preempted"
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        time.sleep(1)  # slurmd delivers the signal (it waits, pending, in the stopped process)
    finally:
        for pid in tasks:
            os.kill(pid, signal.SIGCONT)
    # Slurm holds a requeued job back for a while (pending reason BeginTime); let it start now
    requeued = False
    while time.monotonic() < deadline and thread.is_alive():
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()
        if state == "PENDING":
            requeued = True
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        elif requeued and state != "PENDING":
            break
        time.sleep(0.5)
    assert requeued, "the signalled job was not requeued"
    thread.join(timeout=600)
    assert not thread.is_alive() and result.get("rc") == 0, capsys.readouterr()
    out = capsys.readouterr().out
    [record] = read_records([tmp_path / "runs"])
    assert record["status"] == "finished", out
    assert record["timings"]["resumed_from_step"] > 0, out
    assert out.count("[1/1] lord on synth3d seed 0: finished") == 1, out
    log = [json.loads(line) for line in (tmp_path / "runs" / record["run_id"] / "train_log.jsonl").read_text().splitlines()]
    steps = [(row["stage"], row["step"]) for row in log]
    assert len(steps) == len(set(steps)) == record["timings"]["steps"], "steps trained twice or lost"


def test_request_check_reads_slurm_formats():
    """Without a cluster: Slurm's time and GRES formats, and which option a request exceeds."""
    from disentbench.config import ConfigError
    from disentbench_plugins.executors.slurm import Node, Partition, SlurmConfig, _gpus, fit_request, parse_minutes

    assert [parse_minutes(t) for t in ("1-00:00:00", "02:30:00", "45:00", "30", "2-12", "UNLIMITED")] == \
        [1440, 150, 45, 30, 3600, None]
    assert (_gpus("gpu:a100:2(S:0-1),gpu:v100:1"), _gpus("gpu:4"), _gpus("(null)")) == (3, 4, 0)
    gpu = Partition("gpu", 720, [Node("a", 8, 64_000, 4), Node("b", 32, 256_000, 0)])
    request = fit_request(SlurmConfig(gpus_per_node=4), gpu)
    assert (request.cpus, request.gpus, request.time_min, request.mem_mb) == (4, 4, 240, 32_000)
    with pytest.raises(ConfigError, match=r"gpus_per_node=8.*partition 'gpu' \(2 node\(s\) with at most 32 "
                                          r"CPUs, 250.0 GB memory and 4 GPUs each, MaxTime 720 min\): lower "
                                          r"slurm.gpus_per_node, or"):
        fit_request(SlurmConfig(gpus_per_node=8), gpu)
    with pytest.raises(ConfigError, match="lower slurm.mem_gb or slurm.time_min"):
        fit_request(SlurmConfig(mem_gb=300, time_min=721), gpu)
    with pytest.raises(ConfigError, match="no single node has all of it"):  # GPUs on a, 16 CPUs on b
        fit_request(SlurmConfig(gpus_per_node=1, cpus_per_task=16), gpu)
