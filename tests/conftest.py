from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

# Tiny settings shared by tests that train: seconds on a CPU, same code paths as the real runs.
TINY: dict[str, dict] = {
    "synth3d": {"resolution": 32, "n_train_classes": 6, "n_test_classes": 3, "n_azimuths": 4, "n_elevations": 2},
    "lord": {"recon_loss": "l1", "generator_channels": 16, "generator_last_channels": 8,
             "generator_last_kernel": 3, "generator_penultimate_kernel": 3, "encoder_channels": 8, "encoder_hidden": 32, "class_dim": 16,
             "content_dim": 8, "epochs": 2, "encoder_epochs": 1, "batch_size": 16, "encoder_batch_size": 16},
    # the generator check off (0): a handful of tiny steps leaves every generator untrained, with outputs
    # as uniform as a collapsed one's (tiny LORD: spread ratio 0.0002, MSE 8.2x the mean image's)
    "eval": {"n_pairs": 40, "max_codes": 200, "grid_size": 3, "check_min_spread": 0.0, "check_max_mse": 0.0},
    "leakage": {"hidden": [32], "max_iter": 50},
    "swap": {"channels": 8, "steps": 60, "min_judge_accuracy": 0.0},
}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Caches and downloads go to a per-session temporary directory, never the user's home."""
    root = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("DISENTBENCH_CACHE", str(root))
    monkeypatch.setenv("DISENTBENCH_WEIGHTS", str(root / "weights"))
    monkeypatch.delenv("DISENTBENCH_DATA", raising=False)
    monkeypatch.delenv("DISENTBENCH_PLUGINS", raising=False)
    monkeypatch.setenv("DISENTBENCH_OFFLINE", "1")  # no test reaches the network; download tests opt back in
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    yield


@pytest.fixture
def tiny() -> dict[str, dict]:
    return {k: dict(v) for k, v in TINY.items()}


@pytest.fixture(scope="session")
def tiny_data():
    """The tiny synth3d bundle (rendered once per session)."""
    import tempfile

    from disentbench_plugins.datasets.synth3d import Synth3D, Synth3DConfig

    with tempfile.TemporaryDirectory() as tmp:
        yield Synth3D(Synth3DConfig(**TINY["synth3d"])).load(Path(tmp), Path(tmp), progress=False)


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "2")


# -- CI cannot go green by skipping ---------------------------------------------------------------
# Top-level modules that `.ci/run` installs (the core dependencies and the test, metrics, reid, ray
# and slurm extras). A test skipped because one of them is missing is a failure: a broken install
# must not pass as "n skipped". Libraries outside this set (mediapipe, mmpose, ...) may still skip.
CI_MODULES = frozenset({
    "torch", "torchvision", "lpips", "torch_fidelity", "torchreid", "cv2", "sklearn", "skimage", "scipy",
    "numpy", "pandas", "h5py", "PIL", "ray", "submitit", "pluggy", "tabulate", "tqdm", "filelock",
    "threadpoolctl", "pytest_timeout",
})
_MISSING_MODULE = re.compile(r"(?:could not import|No module named) '([\w.]+)'")


def missing_ci_module(reason: str) -> str | None:
    """The CI-installed module a skip reason says is missing (importorskip's wording), else None."""
    for match in _MISSING_MODULE.finditer(reason or ""):
        if match.group(1).split(".")[0] in CI_MODULES:
            return match.group(1)
    return None


def _fail_missing_library_skip(report) -> None:
    if not report.skipped or not isinstance(report.longrepr, tuple) or len(report.longrepr) != 3:
        return
    module = missing_ci_module(str(report.longrepr[2]))
    if module is not None:
        report.outcome = "failed"
        report.longrepr = (f"skipped because {module!r} is missing, but CI installs it (see .ci/run): "
                           f"a broken install fails, it never skips. Original reason: {report.longrepr[2]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_missing_library_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_missing_library_skip(outcome.get_result())
