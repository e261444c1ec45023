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
]
