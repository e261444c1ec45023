"""Functions that tests/test_faults_store.py runs in spawned processes (importing only what they
need, so that starting one costs a fraction of a second)."""
from __future__ import annotations

import os
from pathlib import Path


def take_lock(run_dir: str, stale_after: float, barrier, results) -> None:
    """Try to take the lock of ``run_dir`` when every racer is ready; report (pid, won, token) and stay
    alive until all have tried (a winner that exited would leave a dead owner's lock behind)."""
    from disentbench.store import RunDir, RunLock

    lock = RunLock(RunDir(Path(run_dir)), stale_after=stale_after)
    barrier.wait()
    won = lock.acquire()
    results.put((os.getpid(), won, lock.token))
    barrier.wait()


def build_cache(root: str, rounds: int, barrier, results) -> None:
    """Build the same ArrayCache entries as a twin process at the same moment, then load them."""
    import numpy as np

    from disentbench.datacache import ArrayCache

    try:
        for k in range(rounds):
            cache = ArrayCache(Path(root), "race", f"key{k}")
            barrier.wait()
            if not cache.exists():
                with cache.build() as writer:
                    writer.save("x", np.arange(1000, dtype=np.int64) * k)
                    writer.meta = {"round": k}
                    barrier.wait()  # both publish at once
            else:
                barrier.wait()
            loaded = cache.load()
            assert int(loaded.arrays["x"][-1]) == 999 * k and loaded.meta == {"round": k}
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 (report anything to the parent)
        results.put(f"{type(exc).__name__}: {exc}")
        barrier.abort()


def load_synth3d(cache: str, rounds: int, barrier, results) -> None:
    """Load (building on first use) the same synth3d caches as a twin process at the same moment."""
    from disentbench_plugins.datasets.synth3d import Synth3D, Synth3DConfig

    try:
        for k in range(rounds):
            barrier.wait()
            config = Synth3DConfig(resolution=16, n_train_classes=3, n_test_classes=2, n_azimuths=2 + k,
                                   n_elevations=1)
            bundle = Synth3D(config).load(Path(cache), Path(cache), progress=False)
            assert len(bundle.train.images) == 3 * (2 + k) and int(bundle.train.images.sum()) > 0
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001
        results.put(f"{type(exc).__name__}: {exc}")
        barrier.abort()
