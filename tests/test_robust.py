"""robust (Esser et al. 2019): the MI constraint machinery — T′ never informs the encoder, γ follows
eq. 18 / 24, λ follows eq. 23, L_MI is eq. 22 — plus training, logging and the ablations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from disentbench import config as cfg
from disentbench.contracts import DataInfo
from disentbench.training import Batch, ClassGroupSampler, StepContext, TrainOptions
from disentbench_plugins.methods.robust import (
    Robust,
    RobustConfig,
    augmented_lagrangian,
    gamma_update,
    lambda_update,
)

TINY_ROBUST = {"recon_loss": "l1", "generator_channels": 16, "generator_last_channels": 8, "generator_last_kernel": 3,
               "encoder_channels": 8, "encoder_hidden": 32, "appearance_dim": 16, "pose_dim": 8,
               "classifier_hidden": 32, "epochs": 2, "batch_size": 16}


def _robust(data, **over) -> Robust:
    torch.manual_seed(0)
    return Robust(cfg.build(RobustConfig, {**TINY_ROBUST, **over}), DataInfo.from_split(data.train))


def _pair_batch(data, size: int = 16) -> Batch:
    labels = np.unique(data.train.classes, return_inverse=True)[1]
    index = ClassGroupSampler(2).batches(np.random.default_rng(0), data.train, labels, size)[0]
    x = torch.from_numpy(data.train.images[index]).permute(0, 3, 1, 2).float() / 255
    return Batch(images=x, index=torch.from_numpy(index), labels=torch.from_numpy(labels[index]), group_size=2)


class RecordingContext(StepContext):
    """Records, for every update, which of the method's parameters its loss sent gradients to."""

    def __init__(self, method, *args) -> None:
        super().__init__(*args)
        self.method, self.reached = method, {}

    def update(self, loss, *names, retain_graph=False):
        for p in self.method.parameters():
            p.grad = None
        super().update(loss, *names, retain_graph=retain_graph)
        self.reached[names] = {n.split(".")[0] for n, p in self.method.named_parameters() if p.grad is not None}


def test_paper_defaults():
    c = RobustConfig()
    assert c.variant == "adaptive" and c.epsilon == 0.125 and c.fixed_gamma == 1.0  # Table 1, §4.2
    assert c.recon_loss == "perceptual"


def test_t_prime_never_sends_gradients_to_the_encoder(tiny_data):
    method = _robust(tiny_data, lambda_init=1.0)  # λ > 0: L_MI is active, so T's gradients reach E_π
    ctx = RecordingContext(method, method._optimizers(), torch.device("cpu"), "fp32",
                           torch.Generator().manual_seed(0), 10)
    method._step(_pair_batch(tiny_data), ctx)
    classifiers, model = ctx.reached[("classifiers",)], ctx.reached[("model",)]
    assert classifiers == {"T", "T_prime"}  # classifiers learn on detached codes
    assert "T_prime" not in model  # T′ takes no part in the encoder's loss
    assert {"pose_encoder", "appearance_encoder", "decoder", "T"} <= model


def test_augmented_lagrangian_is_eq_22():
    lam, mu, eps = 1.0, 2.0, 0.125
    i_t = torch.tensor(0.5, requires_grad=True)
    loss = augmented_lagrangian(i_t, eps, lam, mu)
    loss.backward()
    assert loss.item() == pytest.approx(lam * 0.375 + mu / 2 * 0.375**2)
    assert i_t.grad.item() == pytest.approx(lam + mu * 0.375)  # pushes I_T down
    low = torch.tensor(-1.0, requires_grad=True)  # I_T − ε < −λ/µ: constant branch
    out = augmented_lagrangian(low, eps, lam, mu)
    out.backward()
    assert out.item() == pytest.approx(-lam**2 / (2 * mu)) and low.grad.item() == 0.0
    edge = torch.tensor(eps - lam / mu)  # continuous where the branches meet
    assert augmented_lagrangian(edge, eps, lam, mu).item() == pytest.approx(-lam**2 / (2 * mu))


def test_lambda_follows_eq_23(tiny_data):
    method = _robust(tiny_data, mu=2.0)
    expected, lam = [], 0.0
    for i_t in [0.5, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0]:
        lam = max(0.0, lam + 2.0 * (i_t - 0.125))
        expected.append(lam)
    got = [method.update_multipliers(i_t, 0.0)[1] for i_t in [0.5, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0]]
    assert got == pytest.approx(expected)
    assert got[1] == pytest.approx(1.1) and got[-1] == 0.0  # rises above ε, falls to 0 below it
    assert float(method.lam) == 0.0 and lambda_update(0.2, 0.225, 0.125, 1.0) == pytest.approx(0.3)


def test_gamma_rises_on_overpowering_and_falls_back(tiny_data):
    method = _robust(tiny_data, gamma_lr=0.1, gamma_bias=0.05)
    rising = [method.update_multipliers(0.1, 0.6)[0] for _ in range(3)]  # I_T′ − I_T = 0.5 > b_γ
    assert rising == pytest.approx([0.045, 0.09, 0.135])
    falling = [method.update_multipliers(0.2, 0.2)[0] for _ in range(40)]  # gap 0 < b_γ
    assert falling[0] == pytest.approx(0.13) and all(a >= b for a, b in zip(falling, falling[1:]))
    assert falling[-1] == 0.0  # clipped at zero (eq. 18's max)
    small = method.update_multipliers(0.2, 0.24)[0]  # a gap below b_γ does not raise it
    assert small == 0.0 and gamma_update(0.0, 0.2, 0.24, 0.1, 0.05) == 0.0


def test_ablation_rules(tiny_data):
    variational = _robust(tiny_data, variant="variational", gamma_lr=0.1)
    assert variational.update_multipliers(0.9, 0.325) == pytest.approx((0.02, 0.0))  # eq. 24; no λ
    equal = _robust(tiny_data, variant="equal", gamma_lr=0.1)
    assert equal.update_multipliers(0.2, 0.3)[0] == pytest.approx(0.01)  # b_γ = 0
    fixed = _robust(tiny_data, variant="fixed")
    assert float(fixed.gamma) == 1.0 and fixed.update_multipliers(0.0, 0.9)[0] == 1.0
    adversarial = _robust(tiny_data, variant="adversarial")
    assert adversarial.update_multipliers(0.0, 0.9)[0] == 0.0
    with pytest.raises(cfg.ConfigError):
        _robust(tiny_data, variant="vae")


@pytest.mark.parametrize("variant", ["adversarial", "variational", "adaptive"])
def test_loss_terms_per_variant(tiny_data, variant):
    method = _robust(tiny_data, variant=variant, lambda_init=0.5, gamma_init=0.3)
    row = method.fit(tiny_data.train, TrainOptions(max_steps=1), seed=0, progress=False).log[0]
    vb, mi = 0.3 * row["kl"], row["l_mi"]
    expected = {"adversarial": row["reconstruction"] + mi, "variational": row["reconstruction"] + vb,
                "adaptive": row["reconstruction"] + vb + mi}[variant]
    assert row["loss"] == pytest.approx(expected, rel=1e-5)


def test_logs_estimates_and_multipliers_every_step_and_reports_them(tiny_data):
    method = _robust(tiny_data, variant="equal")
    result = method.fit(tiny_data.train, TrainOptions(max_steps=4), seed=0, progress=False)
    assert len(result.log) == 4
    for row in result.log:
        assert {"i_t", "i_t_prime", "gamma", "lambda", "reconstruction", "kl"} <= set(row)
    assert result.info["variant"] == "equal"
    assert result.info["gamma"] == result.log[-1]["gamma"] and result.info["lambda"] == result.log[-1]["lambda"]
    assert result.info["i_t"] == pytest.approx(result.log[-1]["i_t"])
    state = method.state_dict()  # the multipliers are checkpointed with the model
    assert {"gamma", "lam", "i_t", "i_t_prime"} <= set(state)


def test_reconstruction_loss_decreases(tiny_data):
    method = _robust(tiny_data, epochs=20, lr=3e-3, lr_classifier=3e-3)
    log = method.fit(tiny_data.train, TrainOptions(), seed=0, progress=False).log
    rec = [row["reconstruction"] for row in log]
    assert len(rec) >= 40
    assert np.mean(rec[-5:]) < 0.7 * np.mean(rec[:5])


def test_codes_are_appearance_and_pose_means(tiny_data):
    method = _robust(tiny_data).eval()
    x = torch.rand(3, 3, 32, 32)
    codes = method.encode(x)
    assert codes.class_code.shape == (3, 16) and codes.content_code.shape == (3, 8)
    assert torch.equal(method.encode(x).content_code, codes.content_code)  # the mean: no sampling
    assert method.transfer(x, x.flip(0)).shape == x.shape



def test_classifier_estimate_detects_dependent_codes():
    """T trained by eq. 10–11 on pairs where π depends on α's class: I_T rises above ε (and stays
    near 0 when π is independent of α)."""
    from disentbench.nn import CodeDiscriminator

    g = torch.Generator().manual_seed(0)
    centres, mixing = torch.randn(20, 16, generator=g), torch.randn(16, 8, generator=g) / 4
    estimates = {}
    for dependent in (True, False):
        torch.manual_seed(0)
        t = CodeDiscriminator(8 + 16, 32, 2)
        opt = torch.optim.Adam(t.parameters(), lr=1e-2)
        for _ in range(60):
            cls = torch.randint(20, (32,), generator=g)
            alpha = centres[cls] + 0.1 * torch.randn(32, 16, generator=g)
            pi = (centres[cls] @ mixing if dependent else 0) + 0.3 * torch.randn(32, 8, generator=g)
            loss = Robust.classifier_loss(t, pi, alpha, torch.randperm(32, generator=g))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            estimates[dependent] = Robust.estimate(t, pi, alpha).item()
    assert estimates[True] > 1.0 > 0.125 > abs(estimates[False])
