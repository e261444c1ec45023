"""The metrics with pretrained evaluators (lpips_transfer, fid, reid_map, keypoint_error) run the real
library code paths with randomly initialised backbones and are checked on invariants that hold for
any weights; the missing-weights path is checked end to end, from the record to the leaderboard
cell and ``--require-metrics``."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from disentbench import WeightSpec
from disentbench.contracts import DataBundle, DataInfo, MetricUnavailable, Split
from disentbench.evaluation import EvalContext, EvalOptions, nearest_other_class
from disentbench.plugins import load_registries
from disentbench.runner import evaluate_metric
from disentbench.weights import WeightStore

import testplugins
from conftest import TINY

import torchvision  # noqa: E402,F401  (CI installs it: an import error fails, never skips)


@pytest.fixture
def oracle_ctx(tiny_data):
    testplugins.Oracle.bundle = tiny_data
    method = testplugins.Oracle(testplugins.OracleConfig(), DataInfo.from_split(tiny_data.train))
    return EvalContext(method, tiny_data, device=torch.device("cpu"), seed=0, options=EvalOptions(n_pairs=24))


def _metric(name, ctx, **config):
    regs = load_registries()
    ctx.weights = WeightStore(regs.weights)  # as the runner passes it
    return evaluate_metric(regs.metrics.get(name), config, ctx, regs)


def _register_weights(monkeypatch, tmp_path: Path, name: str, path: Path, *, checksum: bool = True) -> None:
    """Register ``path`` as the weights ``name`` (with its real SHA-256) in a weights root of its own."""
    from disentbench_plugins import weights as builtin_weights

    digest = hashlib.sha256(path.read_bytes()).hexdigest() if checksum else ""
    specs = [s for s in builtin_weights.WEIGHTS if s.name != name]
    specs.append(WeightSpec(name=name, description="test", sha256=digest, filename=path.name))
    monkeypatch.setattr(builtin_weights, "WEIGHTS", specs)
    monkeypatch.setenv("DISENTBENCH_WEIGHTS", str(path.parent))


# -- the transfer protocols ------------------------------------------------------------------------

def _annotated_bundle(n_classes: int = 6, per_class: int = 5, seed: int = 0) -> DataBundle:
    rng = np.random.default_rng(seed)
    n = n_classes * per_class
    images = rng.integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)
    classes = np.repeat(np.arange(n_classes), per_class)
    landmarks = rng.normal(size=(n, 5, 2))
    landmarks[3, 2] = np.nan  # an undetected landmark
    split = Split(images, classes, extras={"landmarks": landmarks})
    return DataBundle("faces", {"train": split, "test": split})


def test_nearest_neighbour_pairs_follow_lords_celeba_protocol():
    data = _annotated_bundle()
    ctx = EvalContext(None, data, device=torch.device("cpu"), seed=0, options=EvalOptions(n_pairs=40))
    pairs = ctx.transfer_pairs()
    s = data.test
    assert pairs.protocol == "nearest-neighbour:landmarks" and len(pairs.class_idx) == 40
    points = s.extras["landmarks"].reshape(len(s), -1)
    for a, c, target in zip(pairs.class_idx, pairs.content_idx, pairs.targets):
        t = int(np.flatnonzero((s.images == target).all(axis=(1, 2, 3)))[0])
        assert a != t and s.classes[a] == s.classes[t]  # identity from another image of the target's person
        assert s.classes[c] != s.classes[t]  # content from another identity ...
        shared = np.isfinite(points[t]) & np.isfinite(points)
        d = np.where(shared.any(1), np.nansum((points - points[t]) ** 2 * shared, 1) / np.maximum(shared.sum(1), 1), np.inf)
        d[s.classes == s.classes[t]] = np.inf
        assert d[c] == pytest.approx(d.min())  # ... the nearest in landmark space


def test_nearest_other_class_ignores_missing_coordinates():
    points = np.array([[0.0, 0.0], [np.nan, 0.1], [5.0, 5.0], [0.2, np.nan]])
    labels = np.array([0, 1, 1, 0])
    assert nearest_other_class(points[[0]], labels[[0]], points, labels).tolist() == [1]
    assert nearest_other_class(np.array([[np.nan, np.nan]]), np.array([0]), points, labels).tolist() == [-1]


def test_pairs_without_factors_or_annotations_are_random_or_unavailable(tiny_data):
    bundle = DataBundle("plain", {"train": tiny_data.train, "test": Split(tiny_data.test.images, tiny_data.test.classes)})
    ctx = EvalContext(None, bundle, device=torch.device("cpu"), seed=0, options=EvalOptions(n_pairs=20))
    with pytest.raises(MetricUnavailable, match="nearest-neighbour"):
        ctx.transfer_pairs()
    pairs = ctx.transfer_pairs(need_targets=False)
    assert pairs.protocol == "random" and pairs.targets is None and len(pairs.class_idx) == 20
    assert np.all(bundle.test.classes[pairs.class_idx] != bundle.test.classes[pairs.content_idx])


# -- LPIPS -----------------------------------------------------------------------------------------

def test_lpips_with_a_random_backbone_is_zero_for_identical_images():
    from disentbench_plugins.metrics.lpips_transfer import build_lpips, lpips_distances

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    model = build_lpips(None)  # pnet_rand=True: the package's linear heads over a random AlexNet
    assert np.all(lpips_distances(model, a, a, device=torch.device("cpu")) == 0)
    assert np.all(lpips_distances(model, a, b, device=torch.device("cpu")) > 0)
    assert np.all(lpips_distances(model, a[..., :1], a[..., :1], device=torch.device("cpu")) == 0)  # grey images


def test_lpips_metric_with_a_local_alexnet_file(oracle_ctx, tmp_path, monkeypatch):
    """The full path: registered weights, verified, loaded with weights_only, mapped into lpips."""
    import torchvision

    torch.manual_seed(0)
    state = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if k.startswith("features.")}
    path = tmp_path / "alexnet-test.pth"
    torch.save(state, path)
    _register_weights(monkeypatch, tmp_path, "alexnet", path)
    entry = _metric("lpips_transfer", oracle_ctx)
    assert entry["status"] == "ok", entry
    assert entry["values"] == {"lpips": 0.0, "n_pairs": 24.0}  # the oracle's transfers are the targets
    oracle_ctx._memo.clear()
    oracle_ctx.method.transfer = lambda a, b: b  # copies the content image: the wrong class
    assert _metric("lpips_transfer", oracle_ctx)["values"]["lpips"] > 0.01


def test_missing_weights_give_the_documented_record(oracle_ctx):
    entry = _metric("lpips_transfer", oracle_ctx)
    assert entry["status"] == "unavailable" and entry["values"] == {}
    reason = entry["reason"]
    assert "alexnet-owt-7be5be79.pth" in reason  # which file
    assert f"Put the file at {os.environ['DISENTBENCH_WEIGHTS']}" in reason  # where
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in reason  # how
    assert "disentbench weights fetch alexnet" in reason


# -- FID -------------------------------------------------------------------------------------------

def save_random_inception(directory: Path, seed: int) -> Path:
    """torch-fidelity's Inception with Kaiming-normal convolutions (seeded), saved in ``directory``
    (96 MB, never committed): the default initialisation maps every image to nearly the same features."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    cls = fe.FeatureExtractorInceptionV3
    original = cls.load_state_dict
    cls.load_state_dict = lambda self, *a, **k: None  # build it without the (downloaded) weights
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
            model = cls("inception-v3-compat", ["2048"])
    finally:
        cls.load_state_dict = original
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, generator=generator)
    path = Path(directory) / f"inception-kaiming-{seed}.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def random_inception(tmp_path_factory) -> Path:
    return save_random_inception(tmp_path_factory.mktemp("inception"), seed=0)


def test_fid_is_zero_for_identical_sets_and_positive_otherwise(random_inception):
    from disentbench_plugins.metrics.fid import frechet_inception_distance

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-80, 80, size=a.shape), 0, 255).astype(np.uint8)
    cpu = torch.device("cpu")
    assert abs(frechet_inception_distance(a, a, random_inception, device=cpu, feature_layer="64")) < 1e-6
    assert frechet_inception_distance(a, b, random_inception, device=cpu, feature_layer="64") > 1e-3


def test_fid_metric_reports_the_number_of_images(oracle_ctx, random_inception, monkeypatch):
    _register_weights(monkeypatch, random_inception.parent, "inception_fid", random_inception)
    entry = _metric("fid", oracle_ctx, feature_layer="64", max_images=8)
    assert entry["status"] == "ok", entry
    assert abs(entry["values"]["fid"]) < 1e-6 and entry["values"]["n_images"] == 8.0
    assert "64-dimensional" in entry["notes"] and "biased" in entry["notes"]


# -- reID ------------------------------------------------------------------------------------------

def test_reid_query_set_equal_to_the_gallery_gives_full_map():
    from disentbench_plugins.metrics.reid import build_osnet, embed, retrieval_scores

    rng = np.random.default_rng(0)
    gallery = rng.integers(0, 256, size=(6, 32, 16, 3), dtype=np.uint8)
    ids = np.arange(6)
    torch.manual_seed(0)
    model = build_osnet(None)  # torchreid's osnet_x1_0, pretrained=False
    feats = embed(model, gallery, size=(64, 32), device=torch.device("cpu"))
    m_ap, rank1 = retrieval_scores(feats, ids, np.full(6, -1), feats, ids, np.zeros(6, dtype=np.int64))
    assert m_ap == 100.0 and rank1 == 100.0
    shuffled = np.roll(ids, 1)  # every query labelled with another identity: nothing at rank 1
    assert retrieval_scores(feats, shuffled, np.full(6, -1), feats, ids, np.zeros(6, dtype=np.int64))[1] == 0.0


def test_reid_metric_end_to_end(oracle_ctx, tmp_path, monkeypatch, tiny_data):
    """Oracle transfers are exact gallery images of the appearance identity, so every query whose
    target is not the (excluded) appearance image itself is found at rank 1."""
    from disentbench_plugins.metrics.reid import build_osnet

    torch.manual_seed(0)
    path = tmp_path / "osnet-test.pth"  # torchreid's checkpoint layout, with a NumPy scalar as the model zoo's
    torch.save({"state_dict": {f"module.{k}": v for k, v in build_osnet(None).state_dict().items()},
                "epoch": 150, "rank1": np.float64(0.942)}, path)
    _register_weights(monkeypatch, tmp_path, "osnet_market1501", path, checksum=False)
    entry = _metric("reid_map", oracle_ctx, datasets=["*"], height=64, width=32)
    assert entry["status"] == "ok", entry
    pairs = oracle_ctx.transfer_pairs(need_targets=False)
    test = tiny_data.test
    target = test.lookup(test.classes[pairs.class_idx], test.factors[pairs.content_idx])
    assert entry["values"]["rank1"] >= 100.0 * np.mean(target != pairs.class_idx) - 1e-9
    assert entry["values"]["n_queries"] == 24.0 and 0 <= entry["values"]["map_reconstruction"] <= 100
    assert "OSNet" in entry["notes"]


class _CopyAppearance:
    """A 'method' whose transfers and reconstructions are the appearance image itself."""

    def transfer(self, class_images, content_images):
        return class_images

    def reconstruct(self, images):
        return images


def test_reid_uses_the_query_and_gallery_splits_and_cameras(tmp_path, monkeypatch):
    """Market-1501's layout: appearance images from "query" (camera 1), the gallery holds each
    person once, seen by camera 2 — identical pixels, so every query is found at rank 1."""
    from disentbench_plugins.metrics.reid import build_osnet

    torch.manual_seed(0)
    path = tmp_path / "osnet-test.pth"
    torch.save(build_osnet(None).state_dict(), path)
    _register_weights(monkeypatch, tmp_path, "osnet_market1501", path, checksum=False)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 32, 16, 3), dtype=np.uint8)
    ids = np.arange(5)
    query = Split(images, ids, extras={"camera": np.ones(5, dtype=np.int64)})
    gallery = Split(images.copy(), ids, extras={"camera": np.full(5, 2, dtype=np.int64)})
    other = Split(images[:2], ids[:2])  # the "test" split must not be used when "query" exists
    data = DataBundle("market1501", {"train": other, "test": other, "query": query, "gallery": gallery})
    ctx = EvalContext(_CopyAppearance(), data, device=torch.device("cpu"), seed=0, options=EvalOptions(n_pairs=8))
    entry = _metric("reid_map", ctx, height=64, width=32)
    assert entry["status"] == "ok", entry
    v = entry["values"]
    assert v["map"] == v["rank1"] == v["map_reconstruction"] == v["rank1_reconstruction"] == 100.0


def test_reid_and_keypoints_do_not_apply_to_objects(oracle_ctx):
    for name in ("reid_map", "keypoint_error"):
        entry = _metric(name, oracle_ctx)
        assert entry["status"] == "unavailable" and "synth3d" in entry["reason"] and "market1501" in entry["reason"]


# -- keypoints -------------------------------------------------------------------------------------

def test_keypoints_shifted_by_a_known_offset_give_that_error():
    from disentbench_plugins.metrics.keypoints import keypoint_distances

    rng = np.random.default_rng(0)
    a = rng.uniform(0, 64, size=(5, 17, 2))
    b = a + np.array([3.0, 4.0])  # 5 px
    b[0, :4] = np.nan  # four keypoints not found in the first generated image
    per_image, detected = keypoint_distances(a, b, width=64)
    assert np.allclose(per_image, 5.0 / 64 * 100)
    assert detected == pytest.approx(1 - 4 / (5 * 17))


class _Shift:
    """A 'method' whose transfer is the pose image moved right by ``dx`` pixels."""

    def __init__(self, dx: int) -> None:
        self.dx = dx

    def transfer(self, class_images, content_images):
        return torch.roll(content_images, shifts=self.dx, dims=3)

    def reconstruct(self, images):
        return images


class _Centroid:
    """A stub detector: one keypoint at the bright square's centre."""

    note = "stub detector"

    def detect(self, images):
        weight = images.astype(float).sum(-1)
        ys, xs = np.mgrid[: images.shape[1], : images.shape[2]]
        total = weight.sum((1, 2))
        return np.stack([(weight * xs).sum((1, 2)) / total, (weight * ys).sum((1, 2)) / total], -1)[:, None, :]


def test_keypoint_metric_end_to_end_with_a_stub_detector(monkeypatch):
    from disentbench_plugins.metrics import keypoints

    monkeypatch.setitem(keypoints.BACKENDS, "centroid", (lambda: None, lambda ctx, c: _Centroid()))
    rng = np.random.default_rng(0)
    images = np.zeros((12, 32, 32, 3), dtype=np.uint8)
    for k, (y, x) in enumerate(rng.integers(4, 20, size=(12, 2))):
        images[k, y : y + 6, x : x + 6] = 200
    split = Split(images, np.repeat(np.arange(4), 3))
    ctx = EvalContext(_Shift(4), DataBundle("people", {"train": split, "test": split}), device=torch.device("cpu"),
                      seed=0, options=EvalOptions(n_pairs=10))
    entry = _metric("keypoint_error", ctx, backend="centroid", datasets=["people"])
    assert entry["status"] == "ok", entry
    v = entry["values"]
    assert v["mean"] == pytest.approx(4 / 32 * 100) and v["std"] == pytest.approx(0, abs=1e-9)
    assert v["mean_reconstruction"] == pytest.approx(0, abs=1e-9) and v["n_images"] == 10 and v["detected"] == 1.0
    assert entry["notes"].startswith("stub detector; ") and "image diagonal" in entry["notes"]


def test_keypoint_error_without_any_backend_says_what_each_needs(oracle_ctx, monkeypatch):
    from disentbench_plugins.metrics import keypoints

    monkeypatch.setitem(keypoints.BACKENDS, "mmpose", (lambda: "mmpose is not installed", None))
    monkeypatch.setitem(keypoints.BACKENDS, "mediapipe", (lambda: "mediapipe is not installed", None))
    entry = _metric("keypoint_error", oracle_ctx, datasets=["*"])
    assert entry["status"] == "unavailable"
    assert "mmpose is not installed" in entry["reason"] and "mediapipe is not installed" in entry["reason"]


def test_mediapipe_backend_measures_a_known_shift_on_a_photograph():
    """Runs only where mediapipe 0.10.21 (bundled BlazePose models) is installed."""
    pytest.importorskip("mediapipe")
    from disentbench_plugins.metrics.keypoints import MediaPipeDetector, keypoint_distances

    if MediaPipeDetector.missing():
        pytest.skip(MediaPipeDetector.missing())
    import skimage.data as skimage_data

    photo = skimage_data.astronaut()[:, 64:448]  # 512 × 384, a person
    shifted = np.zeros_like(photo)
    shifted[:, 12:] = photo[:, :-12]
    kp = MediaPipeDetector().detect(np.stack([photo, shifted]))
    assert np.isfinite(kp[0, :7]).all()  # nose, eyes, ears and shoulders
    head = slice(0, 5)  # nose, eyes, ears: unoccluded, so the detector is exact to a few pixels there
    per_image, _ = keypoint_distances(kp[:1, head], kp[1:, head], width=photo.shape[1])
    assert per_image[0] == pytest.approx(12 / photo.shape[1] * 100, abs=0.5)


def test_mmpose_backend_returns_coco_keypoints(tmp_path):
    """Runs only where mmpose (with mmcv) is installed: a randomly initialised HRNet through the real
    mmpose inference path returns 17 keypoints per image."""
    pytest.importorskip("mmpose")
    pytest.importorskip("mmcv")
    from disentbench_plugins.metrics.keypoints import MMPoseDetector

    detector = MMPoseDetector(checkpoint=None, min_score=0.0)
    kp = detector.detect(np.zeros((2, 64, 32, 3), dtype=np.uint8))
    assert kp.shape == (2, 17, 2)


# -- --require-metrics end to end ------------------------------------------------------------------

def _sets() -> list[str]:
    out = []
    for scope, table in TINY.items():
        for key, value in table.items():
            out += ["--set", f"{scope}.{key}={json.dumps(value)}"]
    return out


def test_unavailable_metric_is_na_in_the_leaderboard_and_fails_with_require_metrics(tmp_path, capsys):
    from disentbench.cli import main

    args = ["run", "--methods", "lord", "--datasets", "synth3d", "--metrics", "lpips_transfer,reconstruction",
            "--device", "cpu", "--quiet", *_sets()]
    assert main([*args, "--out", str(tmp_path / "runs"), "--leaderboard", str(tmp_path / "lb")]) == 0
    board = (tmp_path / "lb" / "README.md").read_text()
    header = next(line for line in board.splitlines() if line.startswith("| method"))
    assert "lpips" not in header  # never a number: no row computed it, so it is a line under the table
    note = next(line for line in board.splitlines() if line.startswith("- not measured: lpips_transfer:"))
    assert "alexnet-owt-7be5be79.pth" in note and "disentbench weights fetch alexnet" in note
    record = json.loads(next((tmp_path / "runs").rglob("record.json")).read_text())
    assert record["status"] == "finished" and record["metrics"]["lpips_transfer"]["status"] == "unavailable"

    capsys.readouterr()
    rc = main([*args, "--require-metrics", "--out", str(tmp_path / "runs2"), "--leaderboard", str(tmp_path / "lb2")])
    assert rc == 1
    assert "--require-metrics: unavailable metric(s): lpips_transfer" in capsys.readouterr().out
    board = (tmp_path / "lb2" / "README.md").read_text()
    assert "Failed runs" in board and "alexnet-owt-7be5be79.pth" in board


# -- weights fetch ---------------------------------------------------------------------------------

def test_weights_fetch_keeps_a_checkpoint_and_refuses_a_web_page(tmp_path, monkeypatch, capsys):
    """Files with no published checksum (torchreid's) must at least load with weights_only=True;
    a page a file host serves in their place is deleted (file:// URLs stand in for the network)."""
    from disentbench.cli import main
    from disentbench_plugins import weights as builtin_weights

    source = tmp_path / "source"
    source.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(2)}, "rank1": np.float64(0.9)}, source / "good.pth")
    (source / "page.pth").write_text("<html>Google Drive can't scan this file for viruses</html>")
    specs = [WeightSpec(name=n, description="test", url=(source / f"{n}.pth").as_uri(), filename=f"{n}-local.pth")
             for n in ("good", "page")]
    monkeypatch.setattr(builtin_weights, "WEIGHTS", specs)
    monkeypatch.setenv("DISENTBENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.delenv("DISENTBENCH_OFFLINE", raising=False)  # file:// URLs: no network involved
    assert main(["weights", "fetch", "good", "--quiet"]) == 0
    assert (tmp_path / "weights" / "good-local.pth").is_file()
    assert main(["weights", "fetch", "page", "--quiet"]) == 1
    assert "not a PyTorch checkpoint that loads safely" in capsys.readouterr().err
    assert not (tmp_path / "weights" / "page-local.pth").exists()
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "present (no checksum published)" in out and "missing" in out
