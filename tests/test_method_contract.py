"""Contract tests run for every registered method (timm's test_models pattern): a new method is
tested the moment it registers. Each method runs at its quick-suite settings on tiny data."""
from __future__ import annotations

import json

import pytest
import torch

from disentbench import config as cfg
from disentbench.contracts import Codes, DataInfo
from disentbench.plugins import load_registries
from disentbench.training import TrainOptions
from disentbench.weights import WeightStore

REGS = load_registries()
QUICK = REGS.suites.get("quick").load().settings
METHODS = REGS.methods.names()


def build(name: str, data, seed: int = 0):
    spec = REGS.methods.get(name)
    options = dict(QUICK.get(name, {}))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return spec.build(options, DataInfo.from_split(data.train, weights=WeightStore(REGS.weights)))


def test_every_method_has_quick_settings_and_an_offline_default():
    missing = [m for m in METHODS if m not in QUICK]
    assert not missing, f"methods without a [settings.NAME] table in benchmarks/quick.toml: {missing}"


@pytest.mark.parametrize("name", METHODS)
def test_shapes_determinism_and_save_load(name, tiny_data, tmp_path):
    from disentbench.runner import unavailable_methods

    missing = unavailable_methods(REGS, [name])
    if missing:  # its own tests cover it with a stand-in weight file
        pytest.skip(f"{name}: {missing[name]}")
    x = torch.from_numpy(tiny_data.test.images[:4]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(tiny_data.test.images[4:8]).permute(0, 3, 1, 2).float() / 255
    outs, logs = [], []
    for _ in range(2):
        method = build(name, tiny_data)
        result = method.fit(tiny_data.train, TrainOptions(max_steps=3), seed=1, progress=False)
        method.eval()
        logs.append([{k: v for k, v in row.items()} for row in result.log])
        outs.append(method.transfer(x, y))
    assert logs[0] == logs[1], "training is not deterministic under a seed"
    assert torch.equal(outs[0], outs[1]), "transfer is not deterministic under a seed"
    out = outs[0]
    assert out.shape == x.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    codes = method.encode(x)
    assert isinstance(codes, Codes) and codes.class_code.shape[0] == 4 and codes.content_code.shape[0] == 4
    assert method.decode(codes.class_code, codes.content_code).shape == x.shape
    assert all("loss" in row or len(row) > 3 for row in logs[0])
    method.save(tmp_path / "state.pt")
    again = build(name, tiny_data, seed=123)
    again.load(tmp_path / "state.pt")
    again.eval()
    assert torch.equal(again.transfer(x, y), out), "save → load does not reproduce the outputs"


@pytest.mark.parametrize("name", METHODS)
def test_every_registered_method_implements_the_method_protocol(name):
    from disentbench.contracts import Method

    assert issubclass(REGS.methods.get(name).load(), Method)


@pytest.mark.parametrize("name", METHODS)
def test_a_planned_config_equals_the_one_rebuilt_from_its_json(name):
    """A run in the planning process uses the Config that plan() built; a worker that receives the
    run as JSON builds it again from its options: both must give the method the same config."""
    spec = REGS.methods.get(name)
    for options in ({}, dict(QUICK.get(name, {}))):
        planned, as_json = cfg.configure(spec, options)
        assert spec.configure(json.loads(json.dumps(as_json))) == planned
