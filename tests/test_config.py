from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from disentbench import config as cfg


@dataclass
class C:
    epochs: int = 3
    lr: float = 1e-3
    loss: Literal["l1", "perceptual"] = "l1"
    sizes: tuple[int, ...] = (1, 2)
    flag: bool = False


def test_parse_sets_types():
    out = cfg.parse_sets(["lord.epochs=5", "lord.lr=1e-4", "train.precision=bf16", "x.sizes=[3, 4]", "x.flag=true"])
    assert out == {"lord": {"epochs": 5, "lr": 1e-4}, "train": {"precision": "bf16"},
                   "x": {"sizes": [3, 4], "flag": True}}


@pytest.mark.parametrize("bad", ["epochs=5", "lord.epochs", ".x=1"])
def test_parse_sets_rejects_malformed(bad):
    with pytest.raises(cfg.ConfigError, match="NAME.FIELD=VALUE"):
        cfg.parse_sets([bad])


def test_build_coerces_and_validates():
    c = cfg.build(C, {"epochs": 7, "lr": 1, "sizes": [5], "loss": "perceptual"})
    assert (c.epochs, c.lr, c.sizes, c.loss) == (7, 1.0, (5,), "perceptual")
    with pytest.raises(cfg.ConfigError, match="unknown option.*epoch.*valid options: epochs"):
        cfg.build(C, {"epoch": 1})
    with pytest.raises(cfg.ConfigError, match="expected an integer"):
        cfg.build(C, {"epochs": "many"})
    with pytest.raises(cfg.ConfigError, match="not one of"):
        cfg.build(C, {"loss": "l2"})


def test_toml_and_merge(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[lord]\nepochs = 5\n[synth3d]\nresolution = 32\n")
    merged = cfg.merge(cfg.load_toml(path), cfg.parse_sets(["lord.epochs=6"]))
    assert merged == {"lord": {"epochs": 6}, "synth3d": {"resolution": 32}}
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = 5\n")
    with pytest.raises(cfg.ConfigError, match="must be a table"):
        cfg.load_toml(bad)


def test_config_hash_is_canonical():
    assert cfg.config_hash({"a": 1, "b": [1, 2]}) == cfg.config_hash({"b": [1, 2], "a": 1})
    assert cfg.config_hash({"a": 1}) != cfg.config_hash({"a": 2})


@dataclass
class Plugin:
    """A third-party plugin's config: checked by name conventions, no code of its own."""

    epochs: int = 3
    encoder_batch_size: int = 8
    warmup_steps: int = 10
    max_steps: int = 0
    lr_disc: float = 1e-3
    id_lr: float = 1e-2
    resolution: int = 64
    split_seed: int = 0
    weight: float = 1.0
    decay_at: float = field(default=0.5, metadata=cfg.allowed(cfg.bounds(0, 1)))
    offset: int = field(default=-5, metadata=cfg.allowed(None))


@pytest.mark.parametrize("option, value, allowed", [
    ("epochs", 0, "an integer ≥ 1"), ("encoder_batch_size", -4, "an integer ≥ 1"),
    ("warmup_steps", 0, "an integer ≥ 1"), ("max_steps", -1, "an integer ≥ 0 (0 = no limit)"),
    ("lr_disc", 0.0, "a number > 0"), ("id_lr", -1.0, "a number > 0"), ("id_lr", float("nan"), "a finite number"),
    ("resolution", 96, "4 × a power of two"), ("split_seed", -1, "an integer ≥ 0"),
    ("weight", float("inf"), "a finite number"), ("decay_at", 1.5, "a number in [0, 1]"),
])
def test_options_are_checked_by_name_and_by_field_metadata(option, value, allowed):
    with pytest.raises(cfg.ConfigError) as exc:
        cfg.build(Plugin, {option: value}, where="plug")
    assert str(exc.value).startswith(f"plug.{option} = {value!r} is not allowed: expected") and allowed in str(exc.value)


def test_allowed_values_pass_and_metadata_can_turn_the_check_off():
    c = cfg.build(Plugin, {"max_steps": 0, "resolution": 8, "decay_at": 0.0, "offset": -9, "weight": -2.0})
    assert (c.max_steps, c.resolution, c.decay_at, c.offset, c.weight) == (0, 8, 0.0, -9, -2.0)


def test_a_bad_default_is_refused_too():
    @dataclass
    class Bad:
        epochs: int = 0

    with pytest.raises(cfg.ConfigError, match="Bad.epochs = 0 is not allowed"):
        cfg.build(Bad, {})
