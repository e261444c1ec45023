"""Every command-line value is checked before any work: one line naming the option, the value and what
is allowed, exit code 2, and nothing written."""
from __future__ import annotations

import dataclasses

import pytest

from disentbench import config as cfg
from disentbench.cli import main
from disentbench.plugins import load_registries

RUN = ["run", "--methods", "lord", "--datasets", "synth3d", "--metrics", "transfer_error", "--device", "cpu", "--quiet"]


def _refused(capsys, tmp_path, argv: list[str]) -> str:
    """Run the CLI in an empty directory; it must refuse with exit 2, one stderr line, and write nothing."""
    out = tmp_path / "runs"
    board = tmp_path / "board"
    assert main([*argv[:1], *(["--out", str(out)] if "--out" not in argv else []),
                 *(["--leaderboard", str(board)] if argv[0] == "run" and "--leaderboard" not in argv else []),
                 *argv[1:]]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("disentbench: error: "), captured.err
    assert "Traceback" not in captured.err and not captured.out
    assert not out.exists() and not board.exists()
    return lines[0]


@pytest.mark.parametrize("sets, option, allowed", [
    (["lord.epochs=0"], "lord.epochs = 0", "integer ≥ 1"),
    (["lord.encoder_epochs=-2"], "lord.encoder_epochs = -2", "integer ≥ 1"),
    (["lord.batch_size=-4"], "lord.batch_size = -4", "integer ≥ 1"),
    (["lord.batch_size=0"], "lord.batch_size = 0", "integer ≥ 1"),
    (["train.max_steps=-1"], "train.max_steps = -1", "≥ 0 (0 = no limit)"),
    (["eval.batch_size=0"], "eval.batch_size = 0", "integer ≥ 1"),
    (["lord.lr_generator=0"], "lord.lr_generator = 0.0", "number > 0"),
    (["lord.lr_latent=-1e-3"], "lord.lr_latent = -0.001", "number > 0"),
    (["lord.lr_latent=nan"], "lord.lr_latent = nan", "finite"),
    (["lord.lr_encoder=inf"], "lord.lr_encoder = inf", "finite"),
    (["synth3d.resolution=48"], "synth3d.resolution = 48", "4 × a power of two"),
    (["synth3d.resolution=0"], "synth3d.resolution = 0", "4 × a power of two"),
    (["synth3d.seed=-3"], "synth3d.seed = -3", "integer ≥ 0"),
    (["local.jobs=0"], "local.jobs = 0", "integer ≥ 1"),
    (["lord.epochs=2", "lord.inference_steps=0"], "lord.inference_steps = 0", "integer ≥ 1"),
])
def test_bad_option_values_are_one_line_before_any_work(sets, option, allowed, tmp_path, capsys):
    line = _refused(capsys, tmp_path, [*RUN, *(a for s in sets for a in ("--set", s))])
    assert option in line and allowed in line


def test_a_method_option_with_its_own_range(tmp_path, capsys):
    """cyclevae.lr_decay_at is a fraction, not a learning rate: its field metadata says [0, 1]."""
    line = _refused(capsys, tmp_path, ["run", "--methods", "cyclevae", "--datasets", "synth3d",
                                       "--set", "cyclevae.lr_decay_at=1.5"])
    assert "cyclevae.lr_decay_at = 1.5" in line and "in [0, 1]" in line
    assert cfg.build(load_registries().methods.get("cyclevae").load().Config, {"lr_decay_at": 0.0}).lr_decay_at == 0.0


@pytest.mark.parametrize("seeds, bad", [("a,b", "'a'"), ("-1", "'-1'"), ("0,1.5", "'1.5'"), ("3-1", "'3-1'"),
                                        ("0,,1", "''")])
def test_bad_seeds_are_one_line(seeds, bad, tmp_path, capsys):
    line = _refused(capsys, tmp_path, [*RUN, "--seeds", seeds])
    assert f"--seeds {seeds!r}" in line and f"{bad} is not a seed" in line and "0-4,7" in line


def test_seed_ranges():
    assert cfg.parse_seeds("0-4,7") == [0, 1, 2, 3, 4, 7]
    assert cfg.parse_seeds("2, 0-2") == [2, 0, 1]  # each once, in the order given
    with pytest.raises(cfg.ConfigError, match="seed -1 is not allowed"):
        cfg.check_seeds([0, -1])


def test_negative_seeds_in_a_suite_file_are_refused(tmp_path):
    from disentbench.suites import load_suite

    path = tmp_path / "mine.toml"
    path.write_text('description = "x"\nmethods = ["lord"]\ndatasets = ["synth3d"]\nseeds = [0, -2]\n')
    with pytest.raises(cfg.ConfigError, match="seed -2 is not allowed"):
        load_suite(path)


def test_jobs_must_be_positive(tmp_path, capsys):
    line = _refused(capsys, tmp_path, [*RUN, "--jobs", "0"])
    assert "--jobs 0" in line and "integer ≥ 1" in line


def test_paper_suites_check_their_options_too(tmp_path, capsys):
    line = _refused(capsys, tmp_path, ["run", "--suite", "lord-table1", "--scale", "quick", "--set", "lord.epochs=0"])
    assert "lord.epochs = 0" in line
    line = _refused(capsys, tmp_path, ["run", "--suite", "lord-table1", "--scale", "quick", "--seeds", "x"])
    assert "--seeds 'x'" in line


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]])
def test_unwritable_out_and_leaderboard_are_one_line(jobs, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    line = _refused(capsys, tmp_path, [*RUN, *jobs, "--out", str(afile)])
    assert f"--out {str(afile)!r} is a file, not a directory" in line
    line = _refused(capsys, tmp_path, [*RUN, *jobs, "--leaderboard", str(afile / "board")])
    assert f"--leaderboard {str(afile / 'board')!r} cannot be created: {str(afile)!r} is a file" in line
    line = _refused(capsys, tmp_path, [*RUN, *jobs, "--out", "/proc/disentbench-test/runs"])  # a read-only file system
    assert "--out '/proc/disentbench-test/runs'" in line and "is not writable" in line
    assert afile.read_text() == "not a directory"


def test_leaderboard_command_checks_its_out(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(afile)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {str(afile)!r} is a file" in err[0]


def test_zero_still_means_no_limit_and_good_values_pass():
    from disentbench.training import TrainOptions

    assert cfg.build(TrainOptions, {"max_steps": 0}).max_steps == 0
    assert cfg.build(TrainOptions, {"checkpoint_every": 0}).checkpoint_every == 0


def _configs():
    from disentbench.evaluation import EvalOptions
    from disentbench.training import TrainOptions

    regs = load_registries()
    out = [("train", TrainOptions), ("eval", EvalOptions)]
    for registry in (regs.methods, regs.datasets, regs.metrics, regs.executors):
        for spec in registry:
            target = spec.load()
            if hasattr(target, "Config"):
                out.append((spec.name, target.Config))
    return out


@pytest.mark.parametrize("name, config", _configs(), ids=[n for n, _ in _configs()])
def test_every_registered_config_default_is_allowed(name, config):
    """Contract: the defaults of every plugin's Config pass the checks its users' values must pass."""
    built = cfg.build(config, {}, where=name)
    for f in dataclasses.fields(built):
        if f.init:
            cfg.check_value(f, getattr(built, f.name), f"{name}.{f.name}")
