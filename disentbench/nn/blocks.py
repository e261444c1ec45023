"""Encoders, decoders, the AdaIN generator and discriminators shared by all methods.

Architectures follow LORD's appendix A.1 (and the official lord-pytorch code it describes):
encoders are 5 convolutions + 3 fully connected layers; the generator is 3 fully connected layers
followed by 6 convolutions, the first 4 preceded by upsampling and followed by AdaIN. Widths are
parameters so the quick suite can shrink them through configuration.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _n_down(resolution: int, final: int = 4) -> int:
    n = int(round(math.log2(resolution / final)))
    if n < 1 or final * 2**n != resolution:
        raise ValueError(f"resolution {resolution} must be {final} times a power of two (e.g. 32, 64, 128)")
    return n


class ConvEncoder(nn.Module):
    """Image → vector. A 7×7 stride-1 convolution, then stride-2 4×4 convolutions down to 4×4
    (4 of them at 64 px: 5 convolutions in all), then 3 fully connected layers."""

    def __init__(self, out_dim: int, resolution: int = 64, in_channels: int = 3, channels: int = 64,
                 max_channels: int = 256, hidden: int = 256, norm: str = "none", slope: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 7, 1, 3), _norm(norm, channels), nn.LeakyReLU(slope)]
        c = channels
        for _ in range(_n_down(resolution)):
            c_out = min(c * 2, max_channels)
            layers += [nn.Conv2d(c, c_out, 4, 2, 1), _norm(norm, c_out), nn.LeakyReLU(slope)]
            c = c_out
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(c * 16, hidden), nn.LeakyReLU(slope),
            nn.Linear(hidden, hidden), nn.LeakyReLU(slope), nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))


class GaussianEncoder(nn.Module):
    """Image → (mean, log-variance) of a diagonal Gaussian, on the shared :class:`ConvEncoder`."""

    def __init__(self, out_dim: int, **kwargs) -> None:
        super().__init__()
        self.body = ConvEncoder(2 * out_dim, **kwargs)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.body(x).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z = μ + σ·ε with ε supplied by the caller (from the step's seeded generator)."""
    return mu + torch.exp(0.5 * logvar) * noise


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per sample, summed over dimensions."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"unknown norm {kind!r}; use none, batch or instance")


class ConvDecoder(nn.Module):
    """Vector → image: a fully connected layer to 4×4, then upsample-convolution blocks, sigmoid."""

    def __init__(self, in_dim: int, resolution: int = 64, out_channels: int = 3, channels: int = 256,
                 min_channels: int = 64, norm: str = "none") -> None:
        super().__init__()
        self.c0 = channels
        self.fc = nn.Sequential(nn.Linear(in_dim, 16 * channels), nn.LeakyReLU(0.2))
        layers: list[nn.Module] = []
        c = channels
        for _ in range(_n_down(resolution)):
            c_out = max(c // 2, min_channels)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c_out, 3, 1, 1),
                       _norm(norm, c_out), nn.LeakyReLU(0.2)]
            c = c_out
        layers += [nn.Conv2d(c, out_channels, 7, 1, 3), nn.Sigmoid()]
        self.conv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(self.fc(z).view(z.shape[0], self.c0, 4, 4))


class AdaIN(nn.Module):
    """Adaptive instance normalisation: normalise each channel, then scale and shift it by
    parameters predicted from a style (class) code."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x.var(dim=(2, 3), keepdim=True, unbiased=False) + self.eps).sqrt()
        return (x - mean) / std * scale[:, :, None, None] + shift[:, :, None, None]


class AdaINGenerator(nn.Module):
    """LORD's generator: the spatial code goes through 3 FC layers to a (resolution/16)² map, then
    4 × [upsample, 3×3 conv, LeakyReLU, AdaIN(style)], then two convolutions (``penultimate_kernel``,
    default ``last_kernel``, then ``last_kernel``; LORD's official code: 5×5 then 7×7) and a sigmoid;
    ``slope`` is every LeakyReLU's negative slope (official LORD code: 0.01).
    The style code is mapped once to all AdaIN scales and shifts (the modulation layer).
    ``style_dim=0`` gives the same network without AdaIN: a plain generator of one code (for
    single-latent VAEs and C-S fusion's single-fusion variant, so they share LORD's generator).
    Since nothing re-normalises its activations then, its layers get a variance-preserving (He)
    initialisation; with PyTorch's default one its output hardly depends on the code at the start
    (a VAE decoder then ignores z and the posterior collapses)."""

    def __init__(self, spatial_dim: int, style_dim: int, resolution: int = 64, out_channels: int = 3,
                 channels: int = 256, n_adain: int = 4, last_channels: int = 64, last_kernel: int = 7,
                 penultimate_kernel: int | None = None, slope: float = 0.2) -> None:
        super().__init__()
        k1 = last_kernel if penultimate_kernel is None else penultimate_kernel
        self.slope = slope
        self.init_size = resolution // 2**n_adain
        if self.init_size < 1 or self.init_size * 2**n_adain != resolution:
            raise ValueError(f"resolution {resolution} is not divisible by 2**{n_adain}")
        self.channels, self.n_adain = channels, n_adain
        area = self.init_size**2
        self.fc = nn.Sequential(
            nn.Linear(spatial_dim, area * max(1, channels // 8)), nn.LeakyReLU(slope),
            nn.Linear(area * max(1, channels // 8), area * max(1, channels // 4)), nn.LeakyReLU(slope),
            nn.Linear(area * max(1, channels // 4), area * channels), nn.LeakyReLU(slope),
        )
        self.modulation = nn.Linear(style_dim, n_adain * channels * 2) if style_dim > 0 else None
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, 1, 1) for _ in range(n_adain))
        self.adain = AdaIN()
        self.last = nn.Sequential(
            nn.Conv2d(channels, last_channels, k1, 1, k1 // 2), nn.LeakyReLU(slope),
            nn.Conv2d(last_channels, out_channels, last_kernel, 1, last_kernel // 2), nn.Sigmoid(),
        )
        if self.modulation is None:
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    nn.init.kaiming_normal_(module.weight, a=slope, nonlinearity="leaky_relu")
                    nn.init.zeros_(module.bias)

    def forward(self, spatial_code: torch.Tensor, style_code: torch.Tensor | None = None) -> torch.Tensor:
        b = spatial_code.shape[0]
        x = self.fc(spatial_code).view(b, self.channels, self.init_size, self.init_size)
        if (self.modulation is None) != (style_code is None):
            raise ValueError("a style code is needed exactly when the generator was built with style_dim > 0")
        params = None
        if self.modulation is not None:
            params = self.modulation(style_code).view(b, self.n_adain, 2, self.channels)
        for k, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(F.interpolate(x, scale_factor=2, mode="nearest")), self.slope)
            if params is not None:
                x = self.adain(x, params[:, k, 0] + 1.0, params[:, k, 1])
        return self.last(x)


class ConvDiscriminator(nn.Module):
    """Image (or channel-stacked image pair) → one logit per sample: strided convolutions with
    spectral normalisation, down to 4×4, then a linear layer."""

    def __init__(self, resolution: int = 64, in_channels: int = 3, channels: int = 64, max_channels: int = 256) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        layers: list[nn.Module] = []
        c_in, c = in_channels, channels
        for _ in range(_n_down(resolution)):
            layers += [sn(nn.Conv2d(c_in, c, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c_in, c = c, min(c * 2, max_channels)
        self.conv = nn.Sequential(*layers)
        self.out = sn(nn.Linear(c_in * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x).flatten(1)).squeeze(1)


class CodeDiscriminator(nn.Module):
    """Vector → logits: a small MLP (DrNet's scene discriminator, FactorVAE's TC discriminator)."""

    def __init__(self, in_dim: int, hidden: int = 256, layers: int = 3, out_dim: int = 1) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(d, hidden), nn.LeakyReLU(0.2)]
            d = hidden
        mods.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*mods)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        return out.squeeze(1) if out.shape[1] == 1 else out
