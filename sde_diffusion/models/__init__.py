"""Score networks: they map (x, c) to an output shaped like x and know nothing about noise."""

from .embedding import GaussianFourierProjection, SinusoidalEmbedding
from .mlp import MLP
from .unet import UNet

__all__ = ["MLP", "GaussianFourierProjection", "SinusoidalEmbedding", "UNet"]
