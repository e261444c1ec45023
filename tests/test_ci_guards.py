"""CI cannot go green by skipping or hanging: a skip for a library CI installs fails, every test has
a timeout."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import missing_ci_module

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("reason, module", [
    ("could not import 'lpips': No module named 'lpips'", "lpips"),
    ("could not import 'skimage.data': import of skimage.data halted; None in sys.modules", "skimage.data"),
    ("No module named 'torch_fidelity'", "torch_fidelity"),
    ("could not import 'mediapipe': No module named 'mediapipe'", None),
    ("the real Cars3D mirror is not on this machine", None),
])
def test_missing_ci_module_reads_importorskip_reasons(reason, module):
    assert missing_ci_module(reason) == module


def test_a_skip_for_a_ci_library_fails_the_run(tmp_path):
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        import sys
        import pytest

        def test_lpips_missing(monkeypatch):
            monkeypatch.setitem(sys.modules, "lpips", None)  # as if the install had failed
            pytest.importorskip("lpips")

        def test_optional_library_may_skip():
            pytest.importorskip("no_such_optional_library_xyz")

        def test_plain():
            assert True
    """))
    (tmp_path / "test_module_level.py").write_text(textwrap.dedent("""
        import sys
        import pytest
        sys.modules["ray"] = None
        try:
            pytest.importorskip("ray")
        finally:
            del sys.modules["ray"]

        def test_never_collected():
            pass
    """))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
                          "--continue-on-collection-errors", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "1 failed, 1 passed, 1 skipped, 1 error" in text, text
    assert "'lpips' is missing, but CI installs it" in text and "'ray' is missing, but CI installs it" in text


def test_every_test_has_a_timeout(request):
    assert request.config.pluginmanager.hasplugin("timeout")
    assert float(request.config.getini("timeout")) > 0


def test_pyproject_ships_every_file_of_the_source_packages():
    """Each module and data file under disentbench/, plugins/ and benchmarks/ is in the wheel: its
    package is listed and its data files match a package-data pattern (.ci/wheel checks the built wheel)."""
    from fnmatch import fnmatch

    from disentbench.config import tomllib

    root = TESTS.parent
    conf = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir = {"disentbench": "disentbench", **conf.get("package-dir", {})}

    def folder(package: str) -> Path:
        head, _, tail = package.rpartition(".")
        return root / package_dir[package] if package in package_dir else folder(head) / tail

    missing = []
    for top in ("disentbench", "disentbench_plugins", "disentbench_benchmarks"):
        for f in sorted(folder(top).rglob("*")):
            if not f.is_file() or "__pycache__" in f.parts:
                continue
            package = ".".join((top, *f.relative_to(folder(top)).parent.parts))
            if f.suffix == ".py":
                shipped = package in conf["packages"]
            else:
                shipped = any(fnmatch(f.relative_to(folder(owner)).as_posix(), pattern)
                              for owner, patterns in conf.get("package-data", {}).items()
                              if f.is_relative_to(folder(owner)) for pattern in patterns)
            if not shipped:
                missing.append(f.relative_to(root).as_posix())
    assert not missing, f"not in the wheel (pyproject.toml [tool.setuptools]): {missing}"
