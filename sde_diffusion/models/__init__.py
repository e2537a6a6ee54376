"""Score networks: they map (x, c) to an output shaped like x and know nothing about noise;
and the autoencoders of latent diffusion (``autoencoder.py``; diffusers adapter beside it)."""

from .autoencoder import Autoencoder, AutoencoderLoss
from .embedding import GaussianFourierProjection, SinusoidalEmbedding
from .mlp import MLP
from .unet import UNet

__all__ = [
    "MLP",
    "Autoencoder",
    "AutoencoderLoss",
    "GaussianFourierProjection",
    "SinusoidalEmbedding",
    "UNet",
]
