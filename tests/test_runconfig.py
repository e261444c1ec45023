"""RunConfig: one typed, frozen configuration per run. Its ``semantic()`` view is what records store
and hash (the run ids of committed records stay valid); the device is resolved once, at plan time;
it ships as JSON; a method's import error is one of its fields."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from disentbench import MethodSpec, hookimpl
from disentbench import config as cfg
from disentbench.plugins import load_registries
from disentbench.runner import PlannedRun, execute, plan

import testplugins

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted((ROOT / "results").glob("*/*/*/*/record.json"))


@pytest.fixture(scope="module")
def regs():
    return load_registries(plugins=[testplugins])


def test_committed_records_keep_their_config_hash_and_run_id():
    assert RECORDS, "no committed records under results/"
    for path in RECORDS:
        record = json.loads(path.read_text())
        run = cfg.RunConfig.from_semantic(record["config"])
        assert run.semantic() == record["config"], path
        assert run.config_hash() == record["config_hash"] == record["run_id"].rsplit("-", 1)[1], path


def test_plan_gives_a_committed_record_its_run_id(regs):
    """Planning drnet on cars3d with a committed record's options yields that record's run id."""
    path = next(p for p in RECORDS if "/cpu/cars3d/drnet/" in p.as_posix())
    record = json.loads(path.read_text())
    config = record["config"]
    overrides = {"drnet": {k: v for k, v in config["method"].items() if k != "name"},
                 "cars3d": {k: v for k, v in config["dataset"].items() if k != "name"},
                 "train": config["train"], "eval": config["eval"], **config["metrics"]}
    [cell] = plan(regs, methods="drnet", datasets="cars3d", metrics=list(config["metrics"]), seeds=[record["seed"]],
                  overrides=overrides, device="cpu", progress=False)
    assert cell.run.semantic() == config
    assert cell.config_hash == record["config_hash"] and cell.run_id == record["run_id"]


def test_runtime_options_are_field_metadata_and_not_hashed(regs, tiny):
    runtime = {f.name for f in dataclasses.fields(cfg.TrainOptions) if not cfg.is_semantic(f)}
    assert runtime == {"device", "data_on_device", "checkpoint_every", "num_threads", "compile", "micro_batch"}
    [a] = plan(regs, methods="lord", datasets="synth3d", metrics=[], overrides=tiny, progress=False)
    [b] = plan(regs, methods="lord", datasets="synth3d", metrics=[], progress=False,
               overrides={**tiny, "train": {"num_threads": 2, "checkpoint_every": 7}})
    assert a.config_hash == b.config_hash and set(b.run.semantic()["train"]).isdisjoint(runtime)
    assert b.run.runtime() == {"device": "cpu", "compile": False, "data_on_device": True, "checkpoint_every": 7,
                               "num_threads": 2, "micro_batch": 0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.run.device = "cuda"


def test_micro_batch_is_checked_like_a_batch_size():
    assert cfg.build(cfg.TrainOptions, {"micro_batch": 128}, where="train").micro_batch == 128
    for bad in (-1, 2.5):
        with pytest.raises(cfg.ConfigError, match="micro_batch"):
            cfg.build(cfg.TrainOptions, {"micro_batch": bad}, where="train")


def test_thread_counts_are_checked():
    """train.num_threads (and an executor's threads) is a count: 0 (the default) or more, never -1 or 1.5."""
    assert cfg.build(cfg.TrainOptions, {"num_threads": 2}, where="train").num_threads == 2
    for bad in (-1, 1.5):
        with pytest.raises(cfg.ConfigError, match="num_threads"):
            cfg.build(cfg.TrainOptions, {"num_threads": bad}, where="train")


def test_the_device_is_resolved_once_at_plan_time(regs, tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def device(requested, train=None):
        overrides = {**tiny, **({"train": train} if train else {})}
        [cell] = plan(regs, methods="lord", datasets="synth3d", metrics=[], overrides=overrides, device=requested,
                      progress=False)
        assert cell.run.train.device == cell.run.device
        return cell.run.device

    assert device("auto") == "cuda"
    assert device("auto", {"device": "cpu"}) == "cpu"  # --set train.device is no longer overwritten
    assert device("cuda:1", {"device": "auto"}) == "cuda:1" and device("cpu") == "cpu"
    assert device(None) == "cpu"  # plan() without a device: TrainOptions' default
    with pytest.raises(cfg.PlanError, match="disagree"):
        device("cpu", {"device": "cuda"})


def test_set_train_device_reaches_the_trainer(regs, tiny, tmp_path, monkeypatch):
    from disentbench import training

    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: True)  # "auto" would pick CUDA
        [cell] = plan(regs, methods="lord", datasets="synth3d", metrics=[], device="auto", out=tmp_path / "runs",
                      overrides={**tiny, **cfg.parse_sets(["train.device=cpu"])}, progress=False)
    seen = []
    init = training.Trainer.__init__

    def spy(self, method, train, options, **kwargs):
        seen.append(options.device)
        init(self, method, train, options, **kwargs)

    monkeypatch.setattr(training.Trainer, "__init__", spy)
    record = execute(cell, regs)
    assert record["status"] == "finished", record["error"]
    assert seen and set(seen) == {"cpu"} and record["env"]["device"] == "cpu"


def test_the_command_line_leaves_the_device_to_the_plan(monkeypatch, tmp_path):
    from disentbench import cli, runner

    got = {}

    def fake_plan(regs, **kwargs):
        got.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(runner, "plan", fake_plan)
    with pytest.raises(SystemExit):
        cli.main(["run", "--methods", "lord", "--datasets", "synth3d", "--metrics", "transfer_error", "--quiet",
                  "--out", str(tmp_path / "runs"), "--set", "train.device=cpu"])
    assert got["device"] == "auto" and got["overrides"]["train"] == {"device": "cpu"}


def test_cells_round_trip_through_json(regs, tiny):
    cells = plan(regs, methods="lord,tiny-ae-test", datasets="synth3d", metrics="transfer_error", seeds=[0, 1],
                 overrides={**tiny, "train": {"num_threads": 1, "max_steps": 3}}, progress=False)
    for cell in cells:
        shipped = json.loads(json.dumps(cell.to_json()))
        back = PlannedRun.from_json(shipped)
        assert back == cell and back.run_id == cell.run_id and back.run.runtime() == cell.run.runtime()
        assert isinstance(back.run.train, cfg.TrainOptions) and isinstance(back.run.eval, cfg.EvalOptions)


def test_a_run_in_the_planning_process_builds_the_method_config_once(regs, tmp_path, tiny, monkeypatch):
    """plan() builds the method's Config (checking the options); execute() in the same process gives
    each run a copy of it instead of building it again. The copy is not shipped as JSON."""
    from disentbench_plugins.methods.lord import LORD, LORDConfig

    built, given = [], []
    check, init = LORDConfig.__post_init__, LORD.__init__
    monkeypatch.setattr(LORDConfig, "__post_init__", lambda self: built.append(self) or check(self))
    monkeypatch.setattr(LORD, "__init__", lambda self, config, info: given.append(config) or init(self, config, info))
    cells = plan(regs, methods="lord", datasets="synth3d", metrics=[], seeds=[0, 1], out=tmp_path / "runs",
                 overrides={**tiny, "train": {"max_steps": 2}}, progress=False)
    assert len(built) == 1 and cells[0].run.method_config is built[0]
    for cell in cells:
        assert execute(cell, regs)["status"] == "finished"
    assert len(built) == 1 and len(given) == 2 and given[0] == given[1] == built[0]
    assert given[0] is not given[1] and all(config is not built[0] for config in given)  # a copy per run
    shipped = PlannedRun.from_json(json.loads(json.dumps(cells[0].to_json())))
    assert shipped == cells[0] and shipped.run.method_config is None


def test_cell_is_the_former_name_of_planned_run():
    """Executor plugins that import ``runner.Cell`` (the name before PlannedRun) keep working."""
    from disentbench import runner

    assert runner.Cell is runner.PlannedRun


def test_an_import_error_is_a_field_and_fails_the_run(tmp_path):
    spec = MethodSpec(name="lazy-missing", target="no_such_module_for_disentbench:Thing")

    class Lazy:
        __name__ = "lazy_missing_plugin"

        @hookimpl
        def register_methods(self, register):
            register(spec)

    regs = load_registries([Lazy()])
    [cell] = plan(regs, methods="lazy-missing", datasets="synth3d", metrics=[], out=tmp_path / "runs",
                  overrides={"lazy-missing": {"epochs": 3}}, progress=False)
    assert cell.run.import_error.startswith("ModuleNotFoundError") and "_import_error" not in cell.run.method
    # records keep the marker in their config, as before, so that their hashes do not change
    assert cell.run.semantic()["method"] == {"name": "lazy-missing", "_import_error": cell.run.import_error, "epochs": 3}
    assert cfg.RunConfig.from_semantic(cell.run.semantic()) == cell.run
    assert PlannedRun.from_json(json.loads(json.dumps(cell.to_json()))).run.import_error == cell.run.import_error
    record = execute(cell, regs)
    assert record["status"] == "failed" and record["error"]["type"] == "ImportError"
    assert "could not be imported: ModuleNotFoundError" in record["error"]["message"]
    assert record["config"] == cell.run.semantic() and record["config_hash"] == cell.config_hash
