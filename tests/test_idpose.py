"""idpose (Xiao et al. 2019) and its ground-truth-pose variant: triplet sampling, the pixel-
verification module, the frozen RotNet feature space (with a stand-in weight file), the clear
failure without it, and the sweep's "all" leaving it out when its weights are missing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from disentbench import config as cfg
from disentbench.contracts import DataInfo, Unavailable
from disentbench.plugins import load_registries
from disentbench.training import TrainOptions
from disentbench.weights import WeightStore
from disentbench_plugins.methods.idpose import (
    IDPose,
    IDPoseConfig,
    IDPoseGTPose,
    RotNetConv4,
    TripletSampler,
    kmeans,
    pixel_verification,
)

TINY_IDPOSE = {"recon_loss": "l1", "channels": 8, "n_down": 2, "max_channels": 32, "n_res_blocks": 1,
               "disc_channels": 8, "disc_layers": 2, "epochs": 1, "batch_size": 4, "ema_decay": 0.5,
               "feature_resolution": 64, "pose_clusters": 3, "pvm_size": 16}
ROTNET_FILE = "ImageNet_RotNet_AlexNet_pytorch.pth"


def _build(cls, data, **over):
    torch.manual_seed(0)
    info = DataInfo.from_split(data.train, weights=WeightStore(load_registries().weights))  # as the runner passes it
    return cls(cfg.build(IDPoseConfig, {**TINY_IDPOSE, **over}), info)


def _clips(split) -> np.ndarray:
    return np.unique(split.classes, return_inverse=True)[1].astype(np.int64)


@pytest.fixture
def rotnet_weights(tmp_path, monkeypatch):
    """A randomly initialised RotNet AlexNet saved like the authors' checkpoint ({"network": ...},
    with the layers after conv4 too), where the weight store looks for it."""
    torch.manual_seed(0)
    state = dict(RotNetConv4().state_dict())
    state["_feature_blocks.6.0.weight"] = torch.zeros(256, 256, 3, 3)  # conv5: ignored
    torch.save({"epoch": 50, "network": state}, tmp_path / ROTNET_FILE)
    monkeypatch.setenv("DISENTBENCH_WEIGHTS", str(tmp_path))
    return tmp_path / ROTNET_FILE


def test_paper_defaults():
    c = IDPoseConfig()
    assert (c.w_dis, c.w_pv, c.w_aux, c.w_gan) == (1.0, 1.0, 1.0, 1.0)  # λ1 = λ2 = λ3 = λ4 = 1
    assert c.lr == 1e-4 and c.disc_scales == 2 and c.recon_loss == "perceptual"


def test_missing_weights_error_names_the_file_where_and_how(tiny_data):
    with pytest.raises(Unavailable) as exc:
        _build(IDPose, tiny_data)
    message = str(exc.value)
    assert ROTNET_FILE in message  # which file
    assert "Put the file at" in message  # where
    assert "mega.nz" in message and "FeatureLearningRotNet" in message  # how to fetch it


def test_pvm_affinity_rows_sum_to_one_and_align_the_id_image():
    torch.manual_seed(0)
    h_g, h_id, x_id = torch.randn(2, 5, 4, 4), torch.randn(2, 5, 4, 4), torch.rand(2, 3, 4, 4)
    aligned, w = pixel_verification(h_g, h_id, x_id)
    assert w.shape == (2, 16, 16) and aligned.shape == x_id.shape
    assert torch.allclose(w.sum(-1), torch.ones(2, 16), atol=1e-6)
    assert (w >= 0).all()
    # features that identify pixels uniquely: every generated pixel traces back to itself
    onehot = 30.0 * torch.eye(16).view(16, 4, 4).unsqueeze(0).expand(2, -1, -1, -1)
    same, _ = pixel_verification(onehot, onehot, x_id)
    assert torch.allclose(same, x_id, atol=1e-5)
    perm = torch.randperm(16)  # a permuted generation pulls the permuted pixels
    moved, _ = pixel_verification(onehot.flatten(2)[:, :, perm].reshape(2, 16, 4, 4), onehot, x_id)
    assert torch.allclose(moved.flatten(2), x_id.flatten(2)[:, :, perm], atol=1e-5)


def test_gtpose_triplets_id_and_target_from_one_clip_pose_from_another(tiny_data):
    split = tiny_data.train
    method = _build(IDPoseGTPose, tiny_data)
    clips = _clips(split)
    clusters, candidates = method.retrieval_tables(split, clips)
    sampler = TripletSampler(clusters=clusters, candidates=candidates, clips=clips)
    batches = sampler.batches(np.random.default_rng(3), split, clips, 8)
    assert len(batches) == len(split) // 8
    pose_of = split.content_labels()
    for b in batches:
        ids, targets, poses = b.reshape(3, 8)
        assert (clips[ids] == clips[targets]).all() and (ids != targets).all()
        assert (clips[poses] != clips[targets]).all()
        assert (pose_of[poses] == pose_of[targets]).all()  # ground truth: exactly the target's pose
    again = sampler.batches(np.random.default_rng(3), split, clips, 8)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # a pure function of the rng


def test_pose_pairs_are_balanced(tiny_data):
    split = tiny_data.train
    clips = _clips(split)
    clusters = split.content_labels() % 2  # two pose clusters
    sampler = TripletSampler(clusters=clusters, candidates=[np.flatnonzero(clips != c) for c in clips],
                             clips=clips)
    rng = np.random.default_rng(0)
    pairs = np.array([[clusters[i], clusters[t]] for i, t, _ in (sampler.triplet(rng) for _ in range(4000))])
    counts = np.bincount(pairs[:, 0] * 2 + pairs[:, 1], minlength=4)
    assert counts.min() > 0.8 * counts.max(), counts  # (id pose, target pose) pairs drawn uniformly


def test_rotnet_retrieval_is_the_nearest_neighbour_in_another_clip(tiny_data, rotnet_weights):
    split = tiny_data.train
    method = _build(IDPose, tiny_data)
    assert not any(k.startswith("extractor.") for k in method.state_dict())  # frozen, not checkpointed
    clips = _clips(split)
    clusters, candidates = method.retrieval_tables(split, clips)
    feats = method.pose_features(split)
    sim = feats @ feats.T
    sim[torch.from_numpy(clips[:, None] == clips[None, :])] = -float("inf")
    assert [int(c[0]) for c in candidates] == sim.argmax(1).tolist()
    assert clusters.shape == (len(split),) and set(np.unique(clusters)) <= {0, 1, 2}


def test_rotnet_checkpoint_loads_into_the_authors_layout(rotnet_weights):
    net = RotNetConv4()
    net.load_checkpoint(torch.load(rotnet_weights, weights_only=True))
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 256, 3, 3)  # conv4
    with pytest.raises(ValueError, match="RotNet"):
        RotNetConv4().load_checkpoint({"network": {"conv.weight": torch.zeros(1)}})


def test_idpose_trains_with_its_feature_space(tiny_data, rotnet_weights):
    method = _build(IDPose, tiny_data)
    result = method.fit(tiny_data.train, TrainOptions(max_steps=2), seed=0, progress=False)
    assert len(result.log) == 2 and {"dis1", "dis2", "pv", "gan", "aux", "d_loss"} <= set(result.log[0])
    info = result.info  # → method_info: how good the retrieval was, where ground truth can tell
    assert info["retrieval"] == "features" and info["pose_clusters"] == 3 and 0.0 <= info["pose_reference_exact"] <= 1.0


def test_idpose_is_deterministic_and_saves_and_loads(tiny_data, rotnet_weights, tmp_path):
    """The contract test's checks, which it skips for idpose when the real weights are absent."""
    x = torch.from_numpy(tiny_data.test.images[:3]).permute(0, 3, 1, 2).float() / 255
    runs = []
    for _ in range(2):
        method = _build(IDPose, tiny_data)
        log = method.fit(tiny_data.train, TrainOptions(max_steps=2), seed=1, progress=False).log
        runs.append((log, method.eval().transfer(x, x.flip(0))))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    method.save(tmp_path / "state.pt")
    again = _build(IDPose, tiny_data)
    again.load(tmp_path / "state.pt")
    assert torch.equal(again.eval().transfer(x, x.flip(0)), runs[1][1])


def test_gtpose_loss_decreases(tiny_data):
    method = _build(IDPoseGTPose, tiny_data, epochs=2, batch_size=8, lr=3e-3)
    log = method.fit(tiny_data.train, TrainOptions(), seed=0, progress=False).log
    dis = [row["dis1"] + row["dis2"] for row in log]
    assert len(dis) == 2 * (len(tiny_data.train) // 8)
    assert method._retrieval_info["retrieval"] == "ground-truth" and method._retrieval_info["pose_reference_exact"] == 1.0
    assert np.mean(dis[-3:]) < 0.7 * np.mean(dis[:3])


def test_model_averaging_is_what_inference_uses(tiny_data):
    method = _build(IDPoseGTPose, tiny_data)
    method.fit(tiny_data.train, TrainOptions(max_steps=3), seed=0, progress=False)
    x = torch.rand(2, 3, 32, 32)
    method.eval()
    averaged = method.transfer(x, x.flip(0))
    assert torch.equal(averaged, method.average.decoder(method.average.id_encoder(x), method.average.pose_encoder(x.flip(0)))[0])
    assert not torch.equal(averaged, method.generator.decoder(method.generator.id_encoder(x),
                                                               method.generator.pose_encoder(x.flip(0)))[0])


def test_gtpose_needs_factors(tiny_data):
    info = DataInfo(3, 32, 32, 6, 48)  # no ground-truth factors
    with pytest.raises(Unavailable, match="ground-truth"):
        IDPoseGTPose(cfg.build(IDPoseConfig, TINY_IDPOSE), info)


def test_kmeans_is_deterministic_and_separates_blobs():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 3, generator=g), torch.randn(20, 3, generator=g) + 10])
    a, b = kmeans(x, 2, 10), kmeans(x, 2, 10)
    assert torch.equal(a, b) and len(set(a[:20].tolist())) == 1 and a[0] != a[-1]


class _Planned(Exception):
    """Stops the CLI once it has planned its sweep (nothing trains)."""


def test_sweeps_over_all_leave_out_methods_whose_weights_are_missing(tmp_path, monkeypatch, capsys):
    from disentbench import runner
    from disentbench.cli import main
    from disentbench.plugins import load_registries

    regs = load_registries()
    missing = runner.unavailable_methods(regs)
    assert "idpose" in missing and "rotnet_alexnet" in missing["idpose"]
    assert "idpose-gtpose" not in missing and "robust" not in missing
    planned: list = []

    def fake_plan_suite(suite, regs, **kwargs):  # the one planner: record the methods (rows) it is given
        rows, _ = suite.table(regs)
        planned.append([row.method for row in rows])
        raise _Planned

    monkeypatch.setattr(runner, "plan_suite", fake_plan_suite)
    args = ["--datasets", "synth3d", "--out", str(tmp_path / "r"), "--no-leaderboard", "--quiet", "--device", "cpu"]
    with pytest.raises(_Planned):
        main(["run", "--methods", "all", *args])
    assert "leaving out method 'idpose'" in capsys.readouterr().err
    assert "idpose" not in planned[0] and {"robust", "idpose-gtpose"} <= set(planned[0])
    with pytest.raises(_Planned):  # named explicitly, it runs (and fails saying which file to put where)
        main(["run", "--methods", "idpose", *args])
    assert planned[1] == "idpose" or planned[1] == ["idpose"]


def test_weights_present_means_not_left_out(rotnet_weights):
    from disentbench import runner
    from disentbench.plugins import load_registries

    assert "idpose" not in runner.unavailable_methods(load_registries())
