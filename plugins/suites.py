"""The built-in suites: every ``*.toml`` file shipped in ``benchmarks/``."""
from __future__ import annotations

from importlib import resources

from disentbench import SuiteSpec, hookimpl
from disentbench.config import tomllib


@hookimpl
def register_suites(register):
    for entry in sorted(resources.files("disentbench_benchmarks").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            try:
                description = str(tomllib.loads(entry.read_text()).get("description", ""))
            except tomllib.TOMLDecodeError as exc:  # registered anyway: loading it reports the error
                description = f"(invalid TOML: {exc})"
            register(SuiteSpec(name=entry.name[: -len(".toml")], target=str(entry), description=description))
