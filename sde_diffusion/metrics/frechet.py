"""Frechet distance between Gaussian fits of two feature sets (FID with Inception features).

FD = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1^(1/2) S_2 S_1^(1/2))^(1/2)),
the 2-Wasserstein distance between N(mu_1, S_1) and N(mu_2, S_2) (Dowson & Landau, 1982);
Heusel et al. (2017), Eq. 6 / Sec. 3. The trace term is computed in float64 through two
symmetric eigendecompositions: S_1^(1/2) = V diag(sqrt(l)) V^T, then the eigenvalues of the
symmetric PSD matrix S_1^(1/2) S_2 S_1^(1/2), whose square roots sum to
tr((S_1 S_2)^(1/2)). No complex square root arises (scipy's sqrtm of S_1 S_2 leaves an
imaginary residue that has to be dropped); rounding below zero is clipped and bounded.

FD is biased at finite n: two independent draws of the same data give FD > 0, falling roughly
like d / n (Chong & Forsyth, 2020). Compare models at the same n, against the floor at that n
(:func:`~sde_diffusion.metrics.features.feature_floor`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .features import FeatureStatistics

__all__ = ["frechet_distance", "trace_sqrt_product"]

_NEG_TOL = 1e-8  #: eigenvalues below -tol * largest mean a covariance is not PSD


def _check_psd(lam: Tensor, what: str) -> None:
    if float(lam[0]) < -_NEG_TOL * max(float(lam[-1]), 1e-300):
        raise ValueError(f"{what} is not positive semi-definite (eigenvalue {float(lam[0]):.3g})")


def trace_sqrt_product(s1: np.ndarray | Tensor, s2: np.ndarray | Tensor) -> float:
    """tr((S_1 S_2)^(1/2)) = sum_i sqrt(eig_i(S_1^(1/2) S_2 S_1^(1/2))), S_1, S_2 symmetric PSD;
    float64 (torch.linalg, so torch's thread setting applies)."""
    a = torch.as_tensor(s1, dtype=torch.float64)
    b = torch.as_tensor(s2, dtype=torch.float64)
    lam, v = torch.linalg.eigh((a + a.T) / 2)
    _check_psd(lam, "covariance")
    r = (v * lam.clamp_min(0).sqrt()) @ v.T
    m = r @ b @ r
    mu = torch.linalg.eigvalsh((m + m.T) / 2)
    _check_psd(mu, "S_1^(1/2) S_2 S_1^(1/2)")
    return float(mu.clamp_min(0).sqrt().sum())


def frechet_distance(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """Frechet distance between two :class:`FeatureStatistics` of the same extractor.

    FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), in float64 (module doc).
    Statistics from different extractors (digests) are refused. FD >= 0 up to rounding; it is
    biased upwards at finite n, so compare equal sample sizes and state the floor.
    """
    if not isinstance(a, FeatureStatistics) or not isinstance(b, FeatureStatistics):
        raise ValueError("frechet_distance takes two FeatureStatistics (see feature_statistics)")
    a.check_same_extractor(b)
    diff = a.mean - b.mean
    tr = float(np.trace(a.cov) + np.trace(b.cov)) - 2 * trace_sqrt_product(a.cov, b.cov)
    return float(diff @ diff) + max(tr, 0.0)
