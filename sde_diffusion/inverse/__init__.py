"""Inverse problems y = A x + sigma_y n: observation operators and the exact mixture posterior.

Operators (``Identity``, ``Mask``, ``ChannelMix``, ``AvgPool``) give A, A^T, A^+ and an SVD
beside their noise level; :func:`posterior` gives the exact p(x | y) of a Gaussian-mixture
prior, itself a :class:`~sde_diffusion.GaussianMixture` whose noised marginals have exact
scores, the reference that grades every conditional sampler.
"""

from .base import Operator, OperatorSVD, noise_level
from .exact import event_score_fn, log_evidence, posterior
from .operators import ChannelMix, Identity, Mask
from .pooling import AvgPool

__all__ = [
    "AvgPool",
    "ChannelMix",
    "Identity",
    "Mask",
    "Operator",
    "OperatorSVD",
    "event_score_fn",
    "log_evidence",
    "noise_level",
    "posterior",
]
