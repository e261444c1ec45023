"""idpose — Xiao, Liu & Lee, "Identity from here, Pose from there: Self-supervised Disentanglement
and Generation of Objects using Unlabeled Videos", 2019 (§3–§4).

Training triplets come from clips (here: a class is a clip). I_id and I_target are two images of
one clip; the pose reference I_pose is the nearest neighbour of I_target, among the *other*
clips, in a frozen feature space: conv4 of an AlexNet trained without labels by predicting image
rotations (RotNet, Gidaris et al. 2018) — the registered ``rotnet_alexnet`` weights (§3.2). All
images are clustered into M poses in that space and (id pose, target pose) pairs are sampled
balanced over the unique pairs (:class:`TripletSampler`).

Generator I_g = G(E_i(I_id), E_p(I_pose)) (§3.1): an ID encoder of Conv–ReLU blocks, a pose encoder
of Conv–InstanceNorm–ReLU blocks, their feature maps concatenated into a Pix2PixHD decoder
(residual blocks, then Upsample–Conv instead of transposed convolutions). Losses (§3.3), all
weighted 1:
    L_dis1 = ℓ(I_target, G(E_i(I_id), E_p(I_pose)))
    L_dis2 = ℓ(I_id, G(E_i(I_id), E_p(I_id))) + ℓ(I_pose, G(E_i(I_pose), E_p(I_pose)))
    L_pv   = ‖I′_id − I_g‖₁,  I′_id(i) = Σ_j W(i, j) I_id(j),  W = row-softmax of the affinities of
             the decoder's last features of I_g and I_id (the pixel-verification module)
    L_GAN  = real/fake (D_real) + same-identity pair (D_pair) adversarial losses, 2-scale PatchGAN
    L_aux  = cross-entropy of the clip index from an auxiliary head on D_real
with ℓ the perceptual loss (``recon_loss="l1"`` offline). Discriminators and generator alternate;
the generator's weights are averaged over training (model averaging) for inference.

``idpose-gtpose`` (:class:`IDPoseGTPose`) is a separately named variant that replaces the frozen
feature space by the dataset's ground-truth pose factors: I_pose shows exactly I_target's pose,
and the M pose clusters are the ground-truth poses. It is *pose-supervised*, unlike the paper.

Not given in the paper, chosen here and recorded in the config: M, the feature resolution and
pooling, widths and depths at 64 px, epochs, batch size, the averaging decay and LSGAN losses
(Pix2PixHD's). Left out: colour jitter and random crops (§4, for the real YouTube videos).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from disentbench.contracts import Codes, DataInfo, Split, Unavailable
from disentbench.method import BaseMethod
from disentbench.nn import MultiScaleDiscriminator, ResidualBlock, lsgan_loss, reconstruction_loss
from disentbench.training import Stage, TrainOptions, TrainResult
from disentbench.weights import passed_store

ROTNET_WEIGHTS = "rotnet_alexnet"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RotNet's input normalisation (its README)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class IDPoseConfig:
    channels: int = 64  # first convolution of each encoder (Pix2PixHD's ngf)
    n_down: int = 3  # stride-2 convolutions per encoder: 64 px → 8×8 feature maps
    max_channels: int = 512
    n_res_blocks: int = 9  # Pix2PixHD's global generator
    disc_channels: int = 64
    disc_layers: int = 3
    disc_scales: int = 2  # "we adopt a 2-scale discriminator"
    recon_loss: Literal["perceptual", "l1", "mse"] = "perceptual"  # ℓ in L_dis (paper: perceptual)
    w_dis: float = 1.0  # λ1..λ4 = 1
    w_pv: float = 1.0
    w_aux: float = 1.0
    w_gan: float = 1.0
    pvm_size: int = 0  # PVM on features and images average-pooled to pvm_size²; 0 = full resolution (paper)
    pose_clusters: int = 8  # M (feature retrieval); idpose-gtpose uses the ground-truth poses
    n_neighbours: int = 1  # I_pose: one of the k nearest neighbours of I_target in other clips
    feature_resolution: int = 224  # images are resized to this before the frozen AlexNet
    feature_pool: int = 6  # conv4 maps average-pooled to pool×pool before the cosine retrieval
    cluster_iterations: int = 30  # k-means (Lloyd) iterations for the M pose clusters
    epochs: int = 100
    batch_size: int = 16  # triplets per step (3 × batch_size images)
    triplets_per_epoch: int = 0  # triplets are drawn at random, so an "epoch" is a count; 0 = one per image
    lr: float = 1e-4  # Adam, §4 "Implementation details"
    beta1: float = 0.5  # Pix2PixHD's Adam betas
    beta2: float = 0.999
    ema_decay: float = 0.999  # model averaging of the generator; 0 disables it
    weights: str = ROTNET_WEIGHTS  # the registered feature-extractor weights


# -- the generator ---------------------------------------------------------------------------

def _encoder(in_channels: int, channels: int, n_down: int, max_channels: int, norm: bool) -> tuple[nn.Sequential, int]:
    def block(c_in: int, c_out: int, k: int, s: int, p: int) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, s, p)]
        if norm:
            layers.append(nn.InstanceNorm2d(c_out, affine=True))
        return layers + [nn.ReLU(inplace=True)]

    layers = block(in_channels, channels, 7, 1, 3)
    c = channels
    for _ in range(n_down):
        c_out = min(2 * c, max_channels)
        layers += block(c, c_out, 4, 2, 1)
        c = c_out
    return nn.Sequential(*layers), c


class IDPoseDecoder(nn.Module):
    """[ID features ‖ pose features] → fuse conv → residual blocks → n_down × (Upsample–Conv–IN–ReLU)
    → the last features h → 7×7 conv to RGB, sigmoid. Returns (image, h); h feeds the PVM."""

    def __init__(self, in_channels: int, n_res_blocks: int, n_up: int, out_channels: int, min_channels: int) -> None:
        super().__init__()
        c = in_channels // 2
        self.fuse = nn.Sequential(nn.Conv2d(in_channels, c, 3, 1, 1), nn.InstanceNorm2d(c, affine=True), nn.ReLU(inplace=True))
        self.res = nn.Sequential(*[ResidualBlock(c) for _ in range(n_res_blocks)])
        up: list[nn.Module] = []
        for _ in range(n_up):
            c_out = max(c // 2, min_channels)
            up += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c_out, 3, 1, 1),
                   nn.InstanceNorm2d(c_out, affine=True), nn.ReLU(inplace=True)]
            c = c_out
        self.up = nn.Sequential(*up)
        self.to_rgb = nn.Sequential(nn.Conv2d(c, out_channels, 7, 1, 3), nn.Sigmoid())

    def forward(self, id_features: torch.Tensor, pose_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.up(self.res(self.fuse(torch.cat([id_features, pose_features], 1))))
        return self.to_rgb(h), h


class IDPoseGenerator(nn.Module):
    """E_i (Conv–ReLU), E_p (Conv–InstanceNorm–ReLU) and the decoder G."""

    def __init__(self, c: IDPoseConfig, info: DataInfo) -> None:
        super().__init__()
        self.id_encoder, width = _encoder(info.channels, c.channels, c.n_down, c.max_channels, norm=False)
        self.pose_encoder, _ = _encoder(info.channels, c.channels, c.n_down, c.max_channels, norm=True)
        self.decoder = IDPoseDecoder(2 * width, c.n_res_blocks, c.n_down, info.channels, c.channels)

    def forward(self, id_images: torch.Tensor, pose_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(self.id_encoder(id_images), self.pose_encoder(pose_images))


def pixel_verification(h_g: torch.Tensor, h_id: torch.Tensor, x_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The PVM: W(i, j) = softmax_j ⟨h_g(i), h_id(j)⟩ over all pixel pairs (rows sum to 1), and
    I′_id(i) = Σ_j W(i, j) I_id(j), the ID image aligned to the generation. Returns (I′_id, W)."""
    b, _, hh, ww = h_g.shape
    if x_id.shape[-2:] != (hh, ww):
        raise ValueError(f"PVM features are {hh}×{ww} but the ID image is {tuple(x_id.shape[-2:])}")
    affinity = torch.bmm(h_g.flatten(2).transpose(1, 2), h_id.flatten(2))  # (B, P, P)
    w = torch.softmax(affinity.float(), dim=-1)
    aligned = torch.bmm(w, x_id.flatten(2).transpose(1, 2).float()).transpose(1, 2).reshape(x_id.shape)
    return aligned.to(x_id.dtype), w


# -- the frozen feature space for retrieval --------------------------------------------------

class RotNetConv4(nn.Module):
    """RotNet's AlexNet (BatchNorm variant) up to conv4, with the authors' module names
    (``_feature_blocks.k``) so their checkpoint loads as is. Frozen: its tensors are buffers that
    stay out of the method's state_dict."""

    def __init__(self) -> None:
        super().__init__()

        def conv(c_in: int, c_out: int, k: int, s: int, p: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, k, s, p), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

        self._feature_blocks = nn.ModuleList([
            conv(3, 64, 11, 4, 2), nn.MaxPool2d(3, 2), conv(64, 192, 5, 1, 2), nn.MaxPool2d(3, 2),
            conv(192, 384, 3, 1, 1), conv(384, 256, 3, 1, 1),
        ])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def load_checkpoint(self, state: dict) -> None:
        """Accepts the authors' checkpoint ``{"network": state_dict, ...}`` or a bare state_dict."""
        state = state.get("network", state) if isinstance(state, dict) else state
        state = {k.removeprefix("module."): v for k, v in state.items()}
        ours = self.state_dict()
        missing = [k for k in ours if k not in state and not k.endswith("num_batches_tracked")]
        if missing:
            raise ValueError(f"the {ROTNET_WEIGHTS!r} file lacks {missing[:4]}...: is it RotNet's AlexNet "
                             "(FeatureLearningRotNet architectures/AlexNet.py)?")
        self.load_state_dict({k: state.get(k, ours[k]) for k in ours})
        for module in self.modules():  # frozen, and kept out of the method's state_dict
            for name, param in list(module.named_parameters(recurse=False)):
                delattr(module, name)
                module.register_buffer(name, param.detach(), persistent=False)
            for name, buf in list(module.named_buffers(recurse=False)):
                if name not in ("mean", "std"):
                    module._non_persistent_buffers_set.add(name)
        self.eval()

    def train(self, mode: bool = True) -> "RotNetConv4":
        return super().train(False)  # BatchNorm statistics are frozen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h = (x - self.mean) / self.std
        for block in self._feature_blocks:
            h = block(h)
        return h


def kmeans(x: torch.Tensor, k: int, iterations: int, seed: int = 0) -> torch.Tensor:
    """Cluster rows of ``x`` into ``k`` groups (k-means++ seeding, Lloyd iterations); a pure
    function of ``x`` and ``seed``. Returns the cluster of each row."""
    n = x.shape[0]
    k = min(k, n)
    g = torch.Generator(device="cpu").manual_seed(seed)
    centres = [x[int(torch.randint(n, (1,), generator=g))]]
    d2 = (x - centres[0]).pow(2).sum(1)
    for _ in range(1, k):
        probs = (d2 / d2.sum()).cpu() if float(d2.sum()) > 0 else torch.full((n,), 1.0 / n)
        centres.append(x[int(torch.multinomial(probs, 1, generator=g))])
        d2 = torch.minimum(d2, (x - centres[-1]).pow(2).sum(1))
    c = torch.stack(centres)
    assign = torch.cdist(x, c).argmin(1)
    for _ in range(iterations):
        for j in range(k):
            members = assign == j
            if members.any():
                c[j] = x[members].mean(0)
        new = torch.cdist(x, c).argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
    return assign


# -- triplet sampling ------------------------------------------------------------------------

@dataclass
class TripletSampler:
    """Batches of ``batch_size`` triplets laid out as [I_id ×B, I_target ×B, I_pose ×B].

    I_id and I_target: two different images of one clip; I_pose: one of I_target's pose
    candidates (images of other clips). A (pose of I_id, pose of I_target) cluster pair is drawn
    uniformly among the feasible unique pairs first, so poses are balanced (§3.2). Built once from
    the split (clusters and candidates); :meth:`batches` is then a pure function of ``rng``."""

    clusters: np.ndarray  # (N,) pose cluster of every training image
    candidates: list[np.ndarray]  # per image: indices of its pose references (other clips)
    clips: np.ndarray  # (N,) contiguous clip ids
    n_batches: int = 0  # 0: N // batch_size
    _tables: dict = field(default_factory=dict, init=False, repr=False)

    def _build(self) -> dict:
        if self._tables:
            return self._tables
        clusters, clips = np.asarray(self.clusters), np.asarray(self.clips)
        m, n_clips = int(clusters.max()) + 1, int(clips.max()) + 1
        key = clips * m + clusters
        order = np.argsort(key, kind="stable")
        starts = np.searchsorted(key[order], np.arange(n_clips * m + 1))
        counts = np.diff(starts).reshape(n_clips, m)
        have = counts > 0
        pairs = []
        for a in range(m):
            for b in range(m):
                ok = have[:, a] & have[:, b] if a != b else counts[:, a] >= 2
                if ok.any():
                    pairs.append((a, b))
        if not pairs:
            raise ValueError("no clip has two images: idpose needs at least two images per clip (class)")
        self._tables = dict(m=m, order=order, starts=starts, counts=counts, pairs=np.array(pairs))
        return self._tables

    def members(self, clip: int, cluster: int) -> np.ndarray:
        t = self._build()
        key = clip * t["m"] + cluster
        return t["order"][t["starts"][key] : t["starts"][key + 1]]

    def triplet(self, rng: np.random.Generator) -> tuple[int, int, int]:
        t = self._build()
        a, b = t["pairs"][rng.integers(len(t["pairs"]))]
        counts = t["counts"]
        ok = np.flatnonzero((counts[:, a] > 0) & (counts[:, b] > 0) if a != b else counts[:, a] >= 2)
        clip = int(ok[rng.integers(len(ok))])
        target = int(rng.choice(self.members(clip, b)))
        ids = self.members(clip, a)
        ids = ids[ids != target]
        id_ = int(rng.choice(ids))
        pose = int(rng.choice(self.candidates[target]))
        return id_, target, pose

    def batches(self, rng: np.random.Generator, split: Split, labels: np.ndarray, batch_size: int) -> list[np.ndarray]:
        n_batches = self.n_batches or max(1, len(labels) // batch_size)
        out = []
        for _ in range(n_batches):
            trip = np.array([self.triplet(rng) for _ in range(batch_size)], dtype=np.int64)
            out.append(np.concatenate([trip[:, 0], trip[:, 1], trip[:, 2]]))
        return out


# -- the method ------------------------------------------------------------------------------

class IDPose(BaseMethod):
    """Identity = the class code (E_i's feature map), pose = the content code (E_p's feature map)."""

    Config = IDPoseConfig
    retrieval: ClassVar[str] = "features"  # how I_pose and the pose clusters are found

    def __init__(self, config: IDPoseConfig, info: DataInfo) -> None:
        super().__init__(config, info)
        c = config
        self._check_retrieval(info)
        self.generator = IDPoseGenerator(c, info)
        disc = dict(channels=c.disc_channels, n_layers=c.disc_layers)
        self.d_real = MultiScaleDiscriminator(c.disc_scales, in_channels=info.channels, **disc)
        self.d_pair = MultiScaleDiscriminator(c.disc_scales, in_channels=2 * info.channels, **disc)
        self.aux = nn.Linear(self.d_real.scales[0].out_channels, info.n_classes)  # clip classifier on D_real
        self.average = None
        if c.ema_decay > 0:
            self.average = copy.deepcopy(self.generator)  # model averaging: used for inference
            self.average.requires_grad_(False)
        self.recon = reconstruction_loss(c.recon_loss, self.info.weights)

    def _check_retrieval(self, info: DataInfo) -> None:
        """Builds the frozen feature extractor; fails now (not after training starts) without it."""
        store = passed_store(info.weights, self.config.weights, "ID-pose's feature extractor")
        self.extractor = RotNetConv4()
        self.extractor.load_checkpoint(store.load_state_dict(self.config.weights))

    # -- inference ---------------------------------------------------------------------------
    @property
    def _g(self) -> IDPoseGenerator:
        return self.average if self.average is not None and not self.training else self.generator

    def encode(self, images: torch.Tensor) -> Codes:
        g = self._g
        return Codes(g.id_encoder(images), g.pose_encoder(images))

    def decode(self, class_code: torch.Tensor, content_code: torch.Tensor) -> torch.Tensor:
        return self._g.decoder(class_code, content_code)[0]

    # -- retrieval of pose references (§3.2) -------------------------------------------------
    @torch.no_grad()
    def pose_features(self, split: Split) -> torch.Tensor:
        """L2-normalised, pooled conv4 features of every training image (frozen RotNet AlexNet)."""
        c, device = self.config, self.device
        out = []
        for start in range(0, len(split), 256):
            x = torch.from_numpy(np.ascontiguousarray(split.images[start : start + 256])).to(device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            x = F.interpolate(x, size=(c.feature_resolution, c.feature_resolution), mode="bilinear", align_corners=False)
            h = self.extractor(x)
            h = F.adaptive_avg_pool2d(h, min(c.feature_pool, h.shape[-1]))
            out.append(F.normalize(h.flatten(1).float(), dim=1))
        return torch.cat(out)

    def retrieval_tables(self, split: Split, clips: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """(pose cluster per image, pose-reference candidates per image)."""
        c = self.config
        feats = self.pose_features(split)
        clip_t = torch.from_numpy(clips).to(feats.device)
        k = min(c.n_neighbours, len(clips) - 1)
        neighbours = []
        for start in range(0, len(clips), 1024):
            sim = feats[start : start + 1024] @ feats.T
            sim[clip_t[start : start + 1024, None] == clip_t[None, :]] = -float("inf")  # other clips only
            neighbours.append(sim.topk(k, dim=1).indices.cpu())
        nn_idx = torch.cat(neighbours).numpy()
        clusters = kmeans(feats, c.pose_clusters, c.cluster_iterations).cpu().numpy()
        return clusters, [row for row in nn_idx]

    # -- training ----------------------------------------------------------------------------
    def stages(self, train: Split) -> list[Stage]:
        c = self.config
        clips = np.unique(train.classes, return_inverse=True)[1].astype(np.int64)
        if np.bincount(clips).max() < 2:
            raise ValueError("idpose needs at least two images in some clip (class) to form (I_id, I_target)")
        clusters, candidates = self.retrieval_tables(train, clips)
        n_batches = max(1, c.triplets_per_epoch // c.batch_size) if c.triplets_per_epoch else 0
        sampler = TripletSampler(clusters=clusters, candidates=candidates, clips=clips, n_batches=n_batches)
        self._retrieval_info = {"retrieval": self.retrieval, "pose_clusters": int(clusters.max()) + 1,
                                "pose_pairs": len(sampler._build()["pairs"])}
        if train.has_factors:  # how often I_pose really shows I_target's pose (1.0 = ground truth)
            pose = train.content_labels()
            self._retrieval_info["pose_reference_exact"] = float(np.mean(
                [np.mean(pose[cands] == pose[i]) for i, cands in enumerate(candidates)]))
        return [Stage("train", c.epochs, c.batch_size, self._step, self._optimizers, sampler)]

    def fit(self, train: Split, options: TrainOptions, **kwargs) -> TrainResult:
        """Trains, then reports how the pose references were found (→ ``method_info``)."""
        result = super().fit(train, options, **kwargs)
        result.info.update(getattr(self, "_retrieval_info", {}))
        return result

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        betas = (c.beta1, c.beta2)
        disc = list(self.d_real.parameters()) + list(self.d_pair.parameters()) + list(self.aux.parameters())
        return {"discriminators": torch.optim.Adam(disc, lr=c.lr, betas=betas),
                "generator": torch.optim.Adam(self.generator.parameters(), lr=c.lr, betas=betas)}

    def _step(self, batch, ctx) -> dict[str, torch.Tensor]:
        c = self.config
        x_id, x_tgt, x_pose = batch.images.chunk(3)
        y_id, _, y_pose = batch.labels.chunk(3)
        g = self.generator
        e_i_id, e_p_id = g.id_encoder(x_id), g.pose_encoder(x_id)
        e_i_pose, e_p_pose = g.id_encoder(x_pose), g.pose_encoder(x_pose)
        x_g, h_g = g.decoder(e_i_id, e_p_pose)  # I_g = G(E_i(I_id), E_p(I_pose))
        rec_id, h_id = g.decoder(e_i_id, e_p_id)
        rec_pose, _ = g.decoder(e_i_pose, e_p_pose)

        # discriminators: D_real (real/fake, + clip classifier), D_pair (same identity or not)
        fake = x_g.detach()
        real_logits, real_feats = self.d_real(x_tgt, return_features=True)
        d_real = lsgan_loss(real_logits, True) + lsgan_loss(self.d_real(fake), False)
        d_pair = (lsgan_loss(self.d_pair(torch.cat([x_id, x_tgt], 1)), True)
                  + 0.5 * lsgan_loss(self.d_pair(torch.cat([x_id, fake], 1)), False)
                  + 0.5 * lsgan_loss(self.d_pair(torch.cat([x_id, x_pose], 1)), False))
        _, pose_feats = self.d_real(x_pose, return_features=True)
        aux_real = 0.5 * (F.cross_entropy(self.aux(real_feats.mean((2, 3))), y_id)
                          + F.cross_entropy(self.aux(pose_feats.mean((2, 3))), y_pose))
        d_loss = c.w_gan * (d_real + d_pair) + c.w_aux * aux_real
        ctx.update(d_loss, "discriminators")

        # generator
        dis1 = self.recon(x_g, x_tgt)
        dis2 = self.recon(rec_id, x_id) + self.recon(rec_pose, x_pose)
        pv = self.pixel_verification_loss(h_g, h_id, x_id, x_g)
        fake_logits, fake_feats = self.d_real(x_g, return_features=True)
        gan = lsgan_loss(fake_logits, True) + lsgan_loss(self.d_pair(torch.cat([x_id, x_g], 1)), True)
        aux_fake = F.cross_entropy(self.aux(fake_feats.mean((2, 3))), y_id)
        g_loss = c.w_dis * (dis1 + dis2) + c.w_pv * pv + c.w_aux * aux_fake + c.w_gan * gan
        ctx.update(g_loss, "generator")
        self._average()
        return {"loss": g_loss.detach(), "dis1": dis1.detach(), "dis2": dis2.detach(), "pv": pv.detach(),
                "gan": gan.detach(), "aux": aux_fake.detach(), "d_loss": d_loss.detach(), "d_aux": aux_real.detach()}

    def pixel_verification_loss(self, h_g: torch.Tensor, h_id: torch.Tensor, x_id: torch.Tensor,
                                x_g: torch.Tensor) -> torch.Tensor:
        """L_pv = ‖I′_id − I_g‖₁ (its cost grows with the square of the pixel count; ``pvm_size``
        pools everything to a coarser grid first)."""
        size = self.config.pvm_size
        if size and size < x_g.shape[-1]:
            h_g, h_id, x_id, x_g = (F.adaptive_avg_pool2d(t, size) for t in (h_g, h_id, x_id, x_g))
        aligned, _ = pixel_verification(h_g, h_id, x_id)
        return (aligned - x_g).abs().mean()

    @torch.no_grad()
    def _average(self) -> None:
        if self.average is None:
            return
        d = self.config.ema_decay
        for avg, p in zip(self.average.parameters(), self.generator.parameters()):
            avg.lerp_(p.detach(), 1.0 - d)
        for avg, b in zip(self.average.buffers(), self.generator.buffers()):
            avg.copy_(b)


class IDPoseGTPose(IDPose):
    """idpose with pose references retrieved by ground-truth pose factors (pose-supervised): I_pose
    is an image of another clip in exactly I_target's pose (else the closest pose, by the sum of
    factor-index differences), and the pose clusters are the ground-truth poses. Needs no
    pretrained weights; ``pose_clusters`` and the ``feature_*`` options are unused."""

    retrieval: ClassVar[str] = "ground-truth"

    def _check_retrieval(self, info: DataInfo) -> None:
        if not info.factor_sizes:
            raise Unavailable("idpose-gtpose retrieves pose references by ground-truth pose factors, and this "
                              "dataset has none; use a dataset with factors, or `idpose` (RotNet features)")

    def retrieval_tables(self, split: Split, clips: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        if not split.has_factors:
            raise Unavailable("idpose-gtpose needs ground-truth pose factors in the training split")
        pose = split.content_labels()
        clusters = np.unique(pose, return_inverse=True)[1].astype(np.int64)
        order = np.argsort(pose, kind="stable")
        starts = np.searchsorted(pose[order], np.arange(int(pose.max()) + 2))
        candidates = []
        for i in range(len(pose)):
            same = order[starts[pose[i]] : starts[pose[i] + 1]]
            same = same[clips[same] != clips[i]]
            if len(same) == 0:  # no other clip in exactly this pose: the closest poses
                other = np.flatnonzero(clips != clips[i])
                dist = np.abs(split.factors[other] - split.factors[i]).sum(1)
                same = other[dist == dist.min()]
            candidates.append(same)
        return clusters, candidates
