"""Shared building blocks, so that every method is compared on the same architectures and losses."""
from disentbench.nn.blocks import (
    AdaIN,
    AdaINGenerator,
    CodeDiscriminator,
    ConvDecoder,
    ConvDiscriminator,
    ConvEncoder,
    GaussianEncoder,
    kl_standard_normal,
    reparameterize,
)
from disentbench.nn.losses import PerceptualLoss, reconstruction_loss
from disentbench.nn.pix2pixhd import MultiScaleDiscriminator, PatchDiscriminator, ResidualBlock, lsgan_loss

__all__ = [
    "AdaIN",
    "AdaINGenerator",
    "CodeDiscriminator",
    "ConvDecoder",
    "ConvDiscriminator",
    "ConvEncoder",
    "GaussianEncoder",
    "kl_standard_normal",
    "reparameterize",
    "PerceptualLoss",
    "reconstruction_loss",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "ResidualBlock",
    "lsgan_loss",
]
