from __future__ import annotations

import numpy as np
import pytest

from disentbench_plugins.datasets.synth3d import Synth3D, Synth3DConfig, make_shape, render, view_rotation

SMALL = dict(resolution=32, n_train_classes=4, n_test_classes=2, n_azimuths=4, n_elevations=2)


def test_deterministic_and_seed_dependent(tmp_path):
    a = Synth3D(Synth3DConfig(**SMALL)).load(tmp_path / "a", tmp_path / "a", progress=False)
    b = Synth3D(Synth3DConfig(**SMALL)).load(tmp_path / "b", tmp_path / "b", progress=False)
    c = Synth3D(Synth3DConfig(**SMALL, seed=1)).load(tmp_path / "c", tmp_path / "c", progress=False)
    assert np.array_equal(a.train.images, b.train.images) and np.array_equal(a.test.images, b.test.images)
    assert not np.array_equal(a.train.images, c.train.images)


def test_splits_shapes_and_held_out_classes(tiny_data):
    train, test = tiny_data.train, tiny_data.test
    assert train.images.shape == (6 * 8, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (3 * 8, 32, 32, 3)
    assert set(train.classes).isdisjoint(set(test.classes))
    assert train.factor_names == ("azimuth", "elevation") and train.factor_sizes == (4, 2)
    # every (class, azimuth, elevation) appears exactly once
    keys = set(zip(train.classes.tolist(), *train.factors.T.tolist()))
    assert len(keys) == len(train)


def test_ground_truth_lookup_returns_the_rendered_view(tiny_data):
    test = tiny_data.test
    cfg = Synth3DConfig(**{k: v for k, v in dict(resolution=32, n_train_classes=6, n_test_classes=3,
                                                  n_azimuths=4, n_elevations=2).items()})
    azimuths, elevations = Synth3D(cfg).factor_values()
    cls, az, el = int(test.classes[5]), 3, 1
    idx = test.lookup(np.array([cls]), np.array([[az, el]]))[0]
    expected = render(make_shape(cfg.seed, cls, cfg.min_parts, cfg.max_parts),
                      view_rotation(azimuths[az], elevations[el]), cfg.resolution)
    assert np.array_equal(test.images[idx], expected)
    assert test.lookup(np.array([cls, 999]), np.array([[9, 0], [0, 0]])).tolist() == [-1, -1]


def test_views_of_one_object_differ_and_classes_differ(tiny_data):
    train = tiny_data.train
    same_class = train.images[train.classes == train.classes[0]].astype(int)
    assert np.abs(same_class[0] - same_class[1]).mean() > 1  # azimuth changes the image
    other = train.images[train.classes == train.classes[-1]].astype(int)
    assert np.abs(same_class[0] - other[0]).mean() > 1  # another object at the same view


def test_cache_is_reused(tmp_path, monkeypatch):
    ds = Synth3D(Synth3DConfig(**SMALL))
    ds.load(tmp_path, tmp_path, progress=False)
    monkeypatch.setattr(Synth3D, "generate", lambda *a, **k: pytest.fail("re-rendered a cached dataset"))
    again = ds.load(tmp_path, tmp_path, progress=False)
    assert len(again.train) == 4 * 8


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="resolution"):
        Synth3DConfig(resolution=4)
