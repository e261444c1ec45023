"""Record statuses: one enum names every status a sweep answers, the record schema documents
them, and the runner and every executor build failure records with one constructor."""
from __future__ import annotations

import ast
import json
from pathlib import Path

from disentbench.store import RECORD_SCHEMA, RunStatus, cell_record, failure_record

ROOT = Path(__file__).resolve().parents[1]


class _Cell:
    run_id, method, dataset, seed = "synth3d/lord/seed0-abc", "lord", "synth3d", 0


def test_every_status_is_in_the_schema_and_serialises_as_its_text():
    for status in RunStatus:
        assert f"'{status.value}'" in RECORD_SCHEMA["status"], status
        assert json.loads(json.dumps({"s": status}))["s"] == status.value == f"{status}" == str(status)
        assert status == status.value and {status.value: 1}[status] == 1  # compares and hashes as text


def test_failure_record_names_the_cell_and_the_error():
    record = failure_record(_Cell(), RuntimeError("boom"), "worker died: boom")
    assert record == {"run_id": "synth3d/lord/seed0-abc", "status": "failed", "method": "lord",
                      "dataset": "synth3d", "seed": 0,
                      "error": {"type": "RuntimeError", "message": "worker died: boom", "traceback": ""}}
    assert cell_record(_Cell(), RunStatus.SUBMITTED, job_id="7")["job_id"] == "7"


def test_no_status_is_written_as_a_bare_string():
    """Statuses come from RunStatus: no module writes ``"status": "<run status>"`` by hand."""
    texts = {s.value for s in RunStatus}
    offenders = []
    for path in [*(ROOT / "disentbench").glob("*.py"), *(ROOT / "plugins" / "executors").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if (isinstance(key, ast.Constant) and key.value == "status" and isinstance(value, ast.Constant)
                            and value.value in texts):
                        offenders.append(f"{path.name}:{node.lineno}")
            elif isinstance(node, ast.keyword) and node.arg == "status" and isinstance(node.value, ast.Constant) \
                    and node.value.value in texts:
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders
