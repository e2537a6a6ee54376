"""Inverse-problem methods: samplers of p(x | y) for y = A x + sigma_y n, given a prior score.

Each takes an :class:`~sde_diffusion.inverse.Operator` and the prior's ``score_fn(x, t)``,
never a concrete operator or SDE class, and samples with ``method.sample(sde, score_fn, op,
y, shape, solver=..., steps=...)``:

- :class:`Replacement`: the reference code's imputation, through the SVD (any fixed-step solver);
- :class:`RePaint`: replacement with jumps back and resampling (any fixed-step solver);
- :class:`DPS`: diffusion posterior sampling, a score transform (any solver);
- :class:`PiGDM`: pseudoinverse-guided diffusion through the SVD, a score transform (any solver);
- :class:`SMC`: twisted sequential Monte Carlo, asymptotically exact (its own kernel).
"""

from .base import InverseMethod, ScoreTransform
from .dps import DPS
from .pigdm import PiGDM
from .repaint import RePaint
from .replacement import Replacement, ReplacementSolver
from .smc import SMC

__all__ = [
    "DPS",
    "SMC",
    "InverseMethod",
    "PiGDM",
    "RePaint",
    "Replacement",
    "ReplacementSolver",
    "ScoreTransform",
]
