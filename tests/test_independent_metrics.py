"""Each metric checked at non-trivial values against an independent computation on the same inputs
(the library called directly, or the formula in NumPy/SciPy), with tolerances tight enough that a
wrong value range (×255), channel order (RGB/BGR, HWC/CHW) or protocol detail would fail: every
section also asserts that such a deliberately wrong computation does NOT match."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from disentbench.contracts import DataBundle, Split
from disentbench.evaluation import EvalContext, EvalOptions
from disentbench.plugins import load_registries
from disentbench.runner import evaluate_metric

CPU = torch.device("cpu")


def _metric(name, ctx, **config):
    from disentbench.weights import WeightStore

    regs = load_registries()
    if ctx.weights is None:
        ctx.weights = WeightStore(regs.weights)  # as the runner passes it
    return evaluate_metric(regs.metrics.get(name), config, ctx, regs)


def _photos(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    """``n`` crops of a real photograph (scikit-image's astronaut), uint8 (n, size, size, 3)."""
    from PIL import Image
    from skimage.data import astronaut

    photo = astronaut()
    rng = np.random.default_rng(seed)
    out = []
    for y, x in rng.integers(0, photo.shape[0] - 160, size=(n, 2)):
        out.append(np.asarray(Image.fromarray(photo[y : y + 160, x : x + 160]).resize((size, size), Image.BILINEAR)))
    return np.stack(out)


def _distorted(images: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = images.astype(np.int64) + rng.integers(-40, 41, size=images.shape)
    return np.clip(np.roll(noisy, 2, axis=2), 0, 255).astype(np.uint8)


# -- reID mAP / rank-1: the Market-1501 protocol in NumPy ------------------------------------------

def market1501(q: np.ndarray, q_ids, q_cams, g: np.ndarray, g_ids, g_cams, *, camera_filter: bool = True,
               ignore_junk: bool = True) -> tuple[float, float]:
    """(mAP %, rank-1 %) by Euclidean distance: per query, gallery entries of its identity from its
    camera are excluded, junk entries (id -1) ignored; queries without a relevant entry are skipped."""
    dist = ((q[:, None, :].astype(np.float64) - g[None].astype(np.float64)) ** 2).sum(-1)
    aps, top1 = [], []
    for k in range(len(q)):
        valid = np.ones(len(g), dtype=bool)
        if camera_filter:
            valid &= ~((g_ids == q_ids[k]) & (g_cams == q_cams[k]))
        if ignore_junk:
            valid &= g_ids != -1
        order = np.argsort(dist[k][valid], kind="stable")
        relevant = (g_ids[valid] == q_ids[k])[order]
        if not relevant.any():
            continue
        hits = np.flatnonzero(relevant)  # 0-based ranks of the relevant entries
        aps.append(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))
        top1.append(float(relevant[0]))
    return 100.0 * float(np.mean(aps)), 100.0 * float(np.mean(top1))


def _reid_case(seed: int, n_gallery: int):
    rng = np.random.default_rng(seed)
    g_ids = rng.integers(0, 6, size=n_gallery)
    g_ids[:3] = -1  # junk
    g_cams = rng.integers(1, 4, size=n_gallery)
    q_ids = rng.integers(0, 6, size=15)
    q_cams = rng.integers(1, 4, size=15)
    centres = rng.normal(size=(6, 16))
    g = centres[np.maximum(g_ids, 0)] + 1.2 * rng.normal(size=(n_gallery, 16))
    q = centres[q_ids] + 1.2 * rng.normal(size=(15, 16))
    return (torch.from_numpy(q).float(), q_ids, q_cams, torch.from_numpy(g).float(), g_ids, g_cams)


@pytest.mark.parametrize("n_gallery", [12, 30, 80])
def test_reid_map_and_rank1_match_the_market1501_protocol_on_small_and_large_galleries(n_gallery):
    """Galleries of 12 and 30 entries hold same-identity same-camera entries: torchreid's ranking cut
    at min(50, gallery size) made that a ValueError (ragged rows); 80 exercises the long gallery."""
    from disentbench_plugins.metrics.reid import retrieval_scores

    q, q_ids, q_cams, g, g_ids, g_cams = _reid_case(n_gallery, n_gallery)
    assert ((g_ids[None] == q_ids[:, None]) & (g_cams[None] == q_cams[:, None])).any()  # the case that broke
    m_ap, rank1 = retrieval_scores(q, q_ids, q_cams, g, g_ids, g_cams)
    expected = market1501(q.numpy(), q_ids, q_cams, g.numpy(), g_ids, g_cams)
    assert (m_ap, rank1) == pytest.approx(expected, abs=1e-4)  # torchreid averages rank-1 in float32
    assert 5 < m_ap < 95  # a non-trivial value
    # a wrong protocol (no camera filter, or junk counted as misses) gives other numbers
    no_filter = market1501(q.numpy(), q_ids, q_cams, g.numpy(), g_ids, g_cams, camera_filter=False)
    with_junk = market1501(q.numpy(), q_ids, q_cams, g.numpy(), g_ids, g_cams, ignore_junk=False)
    assert abs(no_filter[0] - m_ap) > 0.5 and abs(with_junk[0] - m_ap) > 0.1


def test_reid_metric_with_a_small_gallery_and_same_camera_entries(tmp_path, monkeypatch):
    """End to end through the metric: a 20-image gallery where every person is also seen by the
    query's camera; the reID network is a fixed random OSNet; the value equals the NumPy protocol on
    the network's own features of the generated and gallery images."""
    from test_pretrained_metrics import _CopyAppearance, _register_weights

    from disentbench_plugins.metrics.reid import build_osnet, embed

    torch.manual_seed(0)
    path = tmp_path / "osnet-test.pth"
    torch.save(build_osnet(None).state_dict(), path)
    _register_weights(monkeypatch, tmp_path, "osnet_market1501", path, checksum=False)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(5, 32, 16, 3), dtype=np.uint8)
    ids = np.arange(5)
    query = Split(base, ids, extras={"camera": np.ones(5, dtype=np.int64)})
    g_ids = np.repeat(ids, 4)
    g_cams = np.array([1, 2, 3, 1, 1, 2, 2, 3, 2, 3, 1, 1, 1, 1, 1, 2, 3, 2, 3, 3])  # 0-3 per person by camera 1
    g_images = np.clip(base[g_ids].astype(int) + rng.integers(-90, 91, size=(20, 32, 16, 3)), 0, 255).astype(np.uint8)
    gallery = Split(g_images, g_ids, extras={"camera": g_cams})
    data = DataBundle("market1501", {"train": query, "test": query, "query": query, "gallery": gallery})
    ctx = EvalContext(_CopyAppearance(), data, device=CPU, seed=0, options=EvalOptions(n_pairs=8))
    entry = _metric("reid_map", ctx, height=64, width=32, reconstruction=False)
    assert entry["status"] == "ok", entry
    pairs = ctx.transfer_pairs("query", need_targets=False)
    model = build_osnet(torch.load(path, weights_only=True))
    q = embed(model, base[pairs.class_idx], size=(64, 32), device=CPU).numpy()
    g = embed(model, g_images, size=(64, 32), device=CPU).numpy()
    m_ap, rank1 = market1501(q, ids[pairs.class_idx], np.ones(8), g, g_ids, g_cams)
    assert entry["values"]["map"] == pytest.approx(m_ap, abs=1e-4)
    assert entry["values"]["rank1"] == pytest.approx(rank1, abs=1e-4)
    assert entry["values"]["n_queries"] == 8


# -- LPIPS: the harness against lpips.LPIPS called directly ---------------------------------------

def _direct_lpips(model, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """lpips's own forward on images in [-1, 1], channels first, as its README calls it."""
    x = torch.from_numpy(a.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
    y = torch.from_numpy(b.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
    with torch.no_grad():
        return model(x, y).flatten().numpy()


def _lpips_package(**kwargs):
    import warnings

    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net="alex", verbose=False, **kwargs).eval()


def test_lpips_random_matches_a_direct_lpips_call_with_the_same_seed():
    from disentbench_plugins.metrics.lpips_random import random_lpips
    from disentbench_plugins.metrics.lpips_transfer import lpips_distances

    a = _photos(6)
    b = _distorted(a)
    ours = lpips_distances(random_lpips(3), a, b, device=CPU)
    torch.manual_seed(3)
    direct = _lpips_package(pnet_rand=True)
    expected = _direct_lpips(direct, a, b)
    assert np.all(expected > 1e-3)  # non-trivial distances
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
    # neither BGR input nor a second division by 255 would pass
    assert not np.allclose(_direct_lpips(direct, a[..., ::-1].copy(), b[..., ::-1].copy()), ours, rtol=1e-3)
    assert not np.allclose(_direct_lpips(direct, a // 255, b // 255), ours, rtol=1e-3)


def test_lpips_with_alexnet_weights_matches_lpips_loading_them_itself(monkeypatch):
    """build_lpips maps a torchvision AlexNet state dict into lpips's slices; lpips itself slices
    torchvision's AlexNet.features when it has ImageNet weights (pnet_rand=False): here torchvision's
    constructor returns a seeded AlexNet, so both must give the same distances."""
    import torchvision

    from disentbench_plugins.metrics.lpips_transfer import build_lpips, lpips_distances

    torch.manual_seed(5)
    alexnet = torchvision.models.alexnet()
    state = {k: v.clone() for k, v in alexnet.state_dict().items()}
    harness = build_lpips(state)  # built first, on a backbone of its own: only the mapping gives it the weights
    with monkeypatch.context() as patch:
        patch.setattr(torchvision.models, "alexnet", lambda *args, **kwargs: alexnet)
        direct = _lpips_package(pnet_rand=False)
    a = _photos(5, seed=2)
    b = _distorted(a, seed=3)
    ours = lpips_distances(harness, a, b, device=CPU)
    expected = _direct_lpips(direct, a, b)
    assert np.all(expected > 1e-3)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(_direct_lpips(direct, a[..., ::-1].copy(), b[..., ::-1].copy()), ours, rtol=1e-3)


# -- FID: torch-fidelity against the Fréchet distance in NumPy/SciPy ------------------------------

@pytest.fixture(scope="module")
def kaiming_inception(tmp_path_factory) -> Path:
    from test_pretrained_metrics import save_random_inception

    return save_random_inception(tmp_path_factory.mktemp("inception"), seed=1)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """||mu1 - mu2||² + tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½), with symmetric eigendecompositions."""
    from scipy.linalg import eigh

    f1, f2 = f1.astype(np.float64), f2.astype(np.float64)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    w, v = eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = eigh(root1 @ s2 @ root1, eigvals_only=True)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(cross, 0, None)).sum())


def _inception_features(path: Path, images: np.ndarray, layer: str) -> np.ndarray:
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    model = fe.FeatureExtractorInceptionV3("inception-v3-compat", [layer], feature_extractor_weights_path=str(path))
    with torch.no_grad():
        return model.eval()(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))[0].numpy()


def test_fid_matches_the_frechet_distance_of_the_same_inception_features(kaiming_inception):
    from disentbench_plugins.metrics.fid import frechet_inception_distance

    a = _photos(6, size=32, seed=4)
    b = _distorted(_photos(6, size=32, seed=5))
    ours = frechet_inception_distance(a, b, kaiming_inception, device=CPU, feature_layer="64")
    features = _inception_features(kaiming_inception, np.concatenate([a, a[..., ::-1], b]), "64").reshape(3, 6, -1)
    expected = frechet_distance(features[0], features[2])
    assert expected > 0.1  # non-trivial (1.013 here)
    assert ours == pytest.approx(expected, rel=1e-4)
    assert frechet_distance(features[1], features[2]) != pytest.approx(ours, rel=1e-2)  # BGR input: another value


# -- transfer MSE and SSIM: against NumPy and scikit-image on the pairs the method received ---------

class _Blend:
    """A 'method' whose transfer is a fixed blend of its two inputs; it records what it received."""

    def __init__(self) -> None:
        self.received: list[tuple[np.ndarray, np.ndarray]] = []

    def transfer(self, class_images: torch.Tensor, content_images: torch.Tensor) -> torch.Tensor:
        self.received.append((class_images.numpy().copy(), content_images.numpy().copy()))
        return 0.7 * class_images + 0.3 * content_images.flip(2)  # content upside down: a wrong pose

    def reconstruct(self, images):
        return images


def _factor_bundle(seed: int = 0) -> DataBundle:
    rng = np.random.default_rng(seed)
    classes = np.repeat(np.arange(4), 6)
    factors = np.tile(np.arange(6), 4)[:, None]
    images = rng.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)
    images[:, 4:12, 4:12] = (40 * factors[:, :, None, None] + 20 * classes[:, None, None, None]).astype(np.uint8)
    split = Split(images, classes, factors, ("pose",), (6,))
    return DataBundle("blend", {"train": split, "test": split})


def test_transfer_mse_and_ssim_match_numpy_and_scikit_image_on_the_pairs_the_method_received():
    from skimage.metrics import structural_similarity

    data = _factor_bundle()
    method = _Blend()
    ctx = EvalContext(method, data, device=CPU, seed=0, options=EvalOptions(n_pairs=30, batch_size=8))
    entry = _metric("transfer_error", ctx)
    assert entry["status"] == "ok", entry
    split = data.test
    flat = split.images.reshape(len(split), -1)
    generated, targets = [], []
    for class_batch, content_batch in method.received:  # float (B, C, H, W) in [0, 1], as the method got them
        for x, y in zip(class_batch, content_batch):
            i = int(np.flatnonzero((flat == np.round(x.transpose(1, 2, 0) * 255).reshape(1, -1)).all(1))[0])
            j = int(np.flatnonzero((flat == np.round(y.transpose(1, 2, 0) * 255).reshape(1, -1)).all(1))[0])
            t = np.flatnonzero((split.classes == split.classes[i]) & (split.factors[:, 0] == split.factors[j, 0]))
            assert len(t) == 1 and split.classes[i] != split.classes[j]
            out = 0.7 * x + 0.3 * y[:, ::-1]
            generated.append(np.round(np.clip(out, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0))
            targets.append(split.images[t[0]])
    generated, targets = np.stack(generated), np.stack(targets)
    assert len(generated) == entry["values"]["n_pairs"] == 30

    mse = float(np.mean((generated / 255.0 - targets / 255.0) ** 2))
    ssim = float(np.mean([structural_similarity(g, t, channel_axis=-1, data_range=255)
                          for g, t in zip(generated, targets)]))
    assert 0.005 < mse and 0.05 < ssim < 0.95  # non-trivial values
    assert entry["values"]["mse"] == pytest.approx(mse, rel=1e-5)
    assert entry["values"]["ssim"] == pytest.approx(ssim, rel=1e-5)
    # wrong scale (0-255) or channel order (BGR output; channels first) would not pass
    assert entry["values"]["mse"] != pytest.approx(float(np.mean((generated.astype(float) - targets) ** 2)), rel=1e-2)
    assert entry["values"]["mse"] != pytest.approx(float(np.mean((generated[..., ::-1] / 255.0 - targets / 255.0) ** 2)), rel=1e-2)
    wrong_range = float(np.mean([structural_similarity(g, t, channel_axis=-1, data_range=1)
                                 for g, t in zip(generated, targets)]))
    chw = float(np.mean([structural_similarity(g.transpose(2, 0, 1), t.transpose(2, 0, 1), channel_axis=-1,
                                               data_range=255, win_size=3) for g, t in zip(generated, targets)]))
    bgr = float(np.mean([structural_similarity(g[..., ::-1], t, channel_axis=-1, data_range=255)
                         for g, t in zip(generated, targets)]))
    for wrong in (wrong_range, chw, bgr):
        assert entry["values"]["ssim"] != pytest.approx(wrong, rel=1e-2)


# -- input checks where images enter a metric ------------------------------------------------------

def _float_chw(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


@pytest.mark.parametrize("bad", ["float_chw", "float_hwc", "uint8_chw", "tensor"])
def test_images_of_the_wrong_type_or_range_are_refused_where_they_enter_a_metric(bad, tmp_path):
    """Float images in [0, 1] were divided by 255 a second time (LPIPS then compares two black images)
    and channels-first arrays read as the wrong axes: every entry point refuses them, saying what it got."""
    from disentbench_plugins.metrics.fid import frechet_inception_distance
    from disentbench_plugins.metrics.lpips_random import random_lpips
    from disentbench_plugins.metrics.lpips_transfer import lpips_distances
    from disentbench_plugins.metrics.preservation import apply
    from disentbench_plugins.metrics.reid import build_osnet, embed

    good = _photos(2, size=32)
    wrong = {"float_chw": _float_chw(good), "float_hwc": good.astype(np.float32) / 255.0,
             "uint8_chw": good.transpose(0, 3, 1, 2).copy(), "tensor": torch.from_numpy(good)}[bad]
    expected = "channels last" if bad == "uint8_chw" else "uint8"
    calls = {
        "lpips_distances": lambda: lpips_distances(random_lpips(0), wrong, good, device=CPU),
        "frechet_inception_distance": lambda: frechet_inception_distance(wrong, good, tmp_path / "unused.pth", device=CPU,
                                                                         feature_layer="64"),
        "reid embed": lambda: embed(build_osnet(None), wrong, size=(64, 32), device=CPU),
        "preservation evaluator": lambda: apply(torch.nn.Identity(), wrong, CPU),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=expected) as info:
            call()
        assert name in str(info.value) and "got a" in str(info.value)


def test_transfer_error_refuses_generated_images_of_the_wrong_size():
    from disentbench_plugins.metrics.pretrained import check_pairs

    with pytest.raises(ValueError, match=r"shapes \(2, 32, 32, 3\) and \(2, 16, 16, 3\)"):
        check_pairs(_photos(2, size=32), _photos(2, size=16), "transfer_error")


# -- keypoint error: undetected outputs counted, not dropped ---------------------------------------

class _Blank:
    """A 'method' whose transfer is the pose image for the first half of a batch and black otherwise."""

    def transfer(self, class_images, content_images):
        out = content_images.clone()
        out[len(out) // 2 :] = 0
        return out

    def reconstruct(self, images):
        return images


def test_keypoint_error_counts_outputs_without_a_person_as_the_largest_error(monkeypatch):
    """Half the outputs are blank (no keypoint found). Before, the mean was taken over the detected
    half only (0: a perfect score); now each lost keypoint is the image diagonal, and the share
    detected is recorded."""
    from test_pretrained_metrics import _Centroid

    from disentbench_plugins.metrics import keypoints

    class Detector(_Centroid):
        def detect(self, images):
            with np.errstate(invalid="ignore"):  # a black image has no centroid
                found = super().detect(images)
            found[images.reshape(len(images), -1).max(1) == 0] = np.nan  # nothing in a black image
            return found

    monkeypatch.setitem(keypoints.BACKENDS, "centroid", (lambda: None, lambda ctx, c: Detector()))
    rng = np.random.default_rng(0)
    images = np.zeros((12, 32, 32, 3), dtype=np.uint8)
    for k, (y, x) in enumerate(rng.integers(4, 20, size=(12, 2))):
        images[k, y : y + 6, x : x + 6] = 200
    split = Split(images, np.repeat(np.arange(4), 3))
    ctx = EvalContext(_Blank(), DataBundle("people", {"train": split, "test": split}), device=CPU, seed=0,
                      options=EvalOptions(n_pairs=10, batch_size=10))
    entry = _metric("keypoint_error", ctx, backend="centroid", datasets=["people"])
    assert entry["status"] == "ok", entry
    v = entry["values"]
    diagonal = np.hypot(32, 32) / 32 * 100
    per_image = np.r_[np.zeros(5), np.full(5, diagonal)]
    assert v["mean"] == pytest.approx(per_image.mean()) and v["std"] == pytest.approx(per_image.std())
    assert v["detected"] == pytest.approx(0.5) and v["n_images"] == 10
    assert v["mean_reconstruction"] == pytest.approx(0, abs=1e-9) and v["detected_reconstruction"] == 1.0
    assert "image diagonal" in entry["notes"]
