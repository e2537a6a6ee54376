"""Kernel Inception Distance: the unbiased MMD^2 with a cubic polynomial kernel, over subsets.

k(x, y) = (x . y / d + 1)^3 (Binkowski et al., 2018, Sec. 3 / Eq. 6), MMD_u^2 as in Gretton et
al. (2012), Lemma 6. KID is the mean over ``subsets`` random subsets (drawn without
replacement, ``subset_size`` from each set), with the standard deviation across subsets, as in
the reference implementations. It is unbiased: 0 in expectation for equal laws, possibly < 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .features import _features_2d

__all__ = ["KIDResult", "kid", "polynomial_mmd2"]


@dataclass(frozen=True)
class KIDResult:
    """``mean`` and ``std`` of MMD_u^2 over ``subsets`` subsets of ``subset_size``."""

    mean: float
    std: float
    subsets: int
    subset_size: int


def _cubic(a: Tensor, b: Tensor) -> Tensor:
    k = a @ b.T / a.shape[1] + 1
    return k * k * k


def polynomial_mmd2(x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
    """Unbiased MMD^2 between feature sets ``(n, d)`` and ``(m, d)``, k(a, b) = (a . b / d + 1)^3,
    in float64 (torch: its thread setting applies, unlike numpy's BLAS)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    n, m = x.shape[0], y.shape[0]
    kxx, kyy = _cubic(x, x), _cubic(y, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * _cubic(x, y).mean())


def kid(
    feat_a: Tensor | np.ndarray,
    feat_b: Tensor | np.ndarray,
    subsets: int = 100,
    subset_size: int | None = None,
    seed: int = 0,
) -> KIDResult:
    """KID between two feature sets ``(n, d)``, ``(m, d)`` of the same extractor.

    Args:
        feat_a, feat_b: features, e.g. ``extract_features(extractor, images)``.
        subsets: number of random subsets (default 100, as torch-fidelity and clean-fid).
        subset_size: images per subset from each set; default min(1000, n, m). At most min(n, m).
        seed: seed of the subset draws.

    Floor: its mean is 0 for equal laws; the spread at the same n (``feature_floor``) is the
    floor, and ``std`` here is the spread over overlapping subsets of the same two sets.
    """
    a, b = _features_2d(feat_a, "feat_a"), _features_2d(feat_b, "feat_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} against {b.shape[1]}")
    limit = min(a.shape[0], b.shape[0])
    if subset_size is None:
        subset_size = min(1000, limit)
    if (
        isinstance(subset_size, bool)
        or not isinstance(subset_size, int)
        or not 2 <= subset_size <= limit
    ):
        raise ValueError(
            f"subset_size must be an integer in [2, min(n, m) = {limit}], got {subset_size!r}"
        )
    if isinstance(subsets, bool) or not isinstance(subsets, int) or subsets < 1:
        raise ValueError(f"subsets must be an integer >= 1, got {subsets!r}")
    rng = np.random.default_rng(seed)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    values = np.array(
        [
            polynomial_mmd2(
                ta[rng.choice(a.shape[0], subset_size, replace=False)],
                tb[rng.choice(b.shape[0], subset_size, replace=False)],
            )
            for _ in range(subsets)
        ]
    )
    std = float(values.std(ddof=1)) if subsets > 1 else 0.0
    return KIDResult(float(values.mean()), std, subsets, subset_size)
