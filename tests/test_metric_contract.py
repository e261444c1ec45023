"""Contract test over every registered metric, with the quick suite's settings on the tiny synth3d:
each computes (declared keys only) or is unavailable with a reason; none raises. A metric that
registers is tested here the moment it does."""
from __future__ import annotations

import pytest
import torch

from disentbench.contracts import DataInfo
from disentbench.evaluation import EvalContext, EvalOptions
from disentbench.plugins import load_registries
from disentbench.runner import evaluate_metric
from disentbench.weights import WeightStore

import testplugins
from conftest import TINY

REGS = load_registries()
QUICK = REGS.suites.get("quick").load().settings
# smaller still than the quick suite for the evaluators trained here (seconds, same code path)
FAST = {name: {"channels": 8, "steps": 4, "batch_size": 16} for name in ("id_preservation", "pose_preservation")}


@pytest.mark.parametrize("name", REGS.metrics.names())
def test_every_metric_computes_or_says_why_not(name, tiny_data, tmp_path):
    testplugins.Oracle.bundle = tiny_data
    method = testplugins.Oracle(testplugins.OracleConfig(), DataInfo.from_split(tiny_data.train))
    ctx = EvalContext(method, tiny_data, device=torch.device("cpu"), seed=0, options=EvalOptions(n_pairs=16, max_codes=48),
                      cache_dir=tmp_path, weights=WeightStore(REGS.weights))
    spec = REGS.metrics.get(name)
    config = {**QUICK.get(name, {}), **TINY.get(name, {}), **FAST.get(name, {})}
    entry = evaluate_metric(spec, config, ctx, REGS)
    assert entry["status"] in ("ok", "unavailable"), entry.get("traceback") or entry
    if entry["status"] == "ok":
        assert entry["values"] and set(entry["values"]) <= set(spec.keys)
    else:
        assert entry["reason"] and entry["values"] == {}
