from __future__ import annotations

from dataclasses import dataclass
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
