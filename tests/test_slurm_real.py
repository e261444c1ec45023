"""The Slurm executor against a real single-node Slurm that these tests start themselves: Debian's
munge, slurmctld and slurmd (installed with apt-get when missing and we are root), a minimal
slurm.conf in a temporary directory, every daemon stopped at the end. Skipped only where the
packages are missing and cannot be installed."""
from __future__ import annotations

import json
import os
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

pytest.importorskip("submitit")  # the [slurm] extra

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


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 512  # leave the OS some room, as RealMemory should
    raise RuntimeError("no MemTotal in /proc/meminfo")


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
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={_mem_mb()} State=UNKNOWN
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
    """With the executor's defaults (which must fit this small node) a two-cell sweep finishes,
    and the wait shows each cell's state instead of silence."""
    assert main(_run_args(tmp_path, *_sets(TINY))) == 0
    out = capsys.readouterr().out
    records = read_records([tmp_path / "runs"])
    assert sorted((r["seed"], r["status"]) for r in records) == [(0, "finished"), (1, "finished")], out
    assert "through submitit (slurm)" in out
    assert "(job " in out and ": running" in out  # the watcher's state lines
    assert "| lord" in (tmp_path / "lb" / "README.md").read_text()
