"""A plugin that ships its own paper suite (``tiny-paper``), as a third-party package would:
loaded with ``DISENTBENCH_PLUGINS=testplugins,suiteplugin`` (its rows use testplugins' methods)."""
from __future__ import annotations

from pathlib import Path

from disentbench import SuiteSpec, hookimpl

SUITE_FILE = Path(__file__).with_name("tiny_paper_suite.toml")


@hookimpl
def register_suites(register):
    register(SuiteSpec(name="tiny-paper", target=str(SUITE_FILE), description="a paper table shipped by a test plugin"))
