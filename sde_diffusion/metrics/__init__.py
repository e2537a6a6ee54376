"""Sample-quality metrics, each with a documented noise floor."""

from .floor import noise_floor
from .mmd import mmd
from .sliced_wasserstein import sliced_wasserstein
from .total_variation import TVResult, total_variation, tv_noise_floor, tv_to_mixture

__all__ = [
    "TVResult",
    "mmd",
    "noise_floor",
    "sliced_wasserstein",
    "total_variation",
    "tv_noise_floor",
    "tv_to_mixture",
]
