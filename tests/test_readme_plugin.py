"""The README's "Writing a plugin" example, verbatim: registered through DISENTBENCH_PLUGINS,
trained for one tiny run, and checked against the Method contract the runner relies on."""
from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path

from disentbench.cli import main
from disentbench.contracts import Method
from disentbench.method import BaseMethod
from conftest import TINY

README = Path(__file__).resolve().parents[1] / "README.md"


def _plugin_code() -> str:
    section = README.read_text().split("## Writing a plugin", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "README's 'Writing a plugin' section has no python code block"
    return found.group(1)


def test_the_readme_plugin_runs_verbatim(tmp_path, monkeypatch):
    (tmp_path / "my_method.py").write_text(_plugin_code())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DISENTBENCH_PLUGINS", "my_method")
    monkeypatch.delitem(sys.modules, "my_method", raising=False)
    sets = [f"--set=synth3d.{k}={json.dumps(v)}" for k, v in TINY["synth3d"].items()]
    rc = main(["run", "--methods", "my-method", "--datasets", "synth3d", "--metrics", "reconstruction",
               "--device", "cpu", "--out", str(tmp_path / "runs"), "--leaderboard", str(tmp_path / "lb"), "--quiet",
               "--set", "my-method.epochs=1", "--set", "my-method.dim=8", *sets,
               # one epoch learns nothing: the generator check would (rightly) fail the run
               "--set", "eval.check_min_spread=0", "--set", "eval.check_max_mse=0"])
    assert rc == 0
    record = json.loads(next((tmp_path / "runs").glob("synth3d/my-method/*/record.json")).read_text())
    assert record["status"] == "finished", record["error"]
    assert record["supervision"] == "unsupervised" and record["metrics"]["reconstruction"]["status"] == "ok"
    module = sys.modules["my_method"]
    assert issubclass(module.MyMethod, Method)


def test_the_method_protocol_is_what_base_method_provides():
    """Every member of the protocol exists on BaseMethod with the same parameters, so a plugin
    written to the protocol is what the runner calls."""
    members = [name for name in vars(Method) if not name.startswith("_") and callable(getattr(Method, name))]
    assert {"stages", "fit", "encode", "decode", "transfer", "reconstruct", "save", "load"} <= set(members)
    for name in members:
        proto = list(inspect.signature(getattr(Method, name)).parameters)
        base = list(inspect.signature(getattr(BaseMethod, name)).parameters)
        if name in ("to", "eval"):  # torch.nn.Module's own (*args, **kwargs) / (mode=True)
            continue
        assert proto == base, (name, proto, base)
    assert issubclass(BaseMethod, Method)
