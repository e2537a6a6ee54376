"""k-NN manifold metrics in feature space: precision and recall, density and coverage.

Every real feature r_i gets a ball of radius NND_k(r_i), the distance to its k-th nearest
other real feature (and every fake feature f_j one of radius NND_k(f_j) among the fakes).

- Precision (Kynkaanniemi et al., 2019, Eq. 1-2): the fraction of fakes inside some real ball;
  recall: the fraction of reals inside some fake ball.
- Density (Naeem et al., 2020, Eq. 4): 1/(k M) sum_j sum_i 1[f_j in B(r_i, NND_k(r_i))],
  expected 1 for equal laws (it may exceed 1); coverage (Eq. 5): the fraction of real balls
  that contain at least one fake.

All depend on k and on the sample sizes: compare at equal n, against the floor at that n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .features import _features_2d

__all__ = ["DensityCoverage", "PrecisionRecall", "density_coverage", "precision_recall"]

_CHUNK = 2048


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float


@dataclass(frozen=True)
class DensityCoverage:
    density: float
    coverage: float


def _check(real: object, fake: object, k: int) -> tuple[Tensor, Tensor]:
    r = torch.from_numpy(_features_2d(real, "real"))
    f = torch.from_numpy(_features_2d(fake, "fake"))
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature dimensions differ: {r.shape[1]} against {f.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if min(r.shape[0], f.shape[0]) <= k:
        raise ValueError(f"k = {k} nearest neighbours need more than {k} samples in each set")
    return r, f


def knn_radii(x: Tensor, k: int) -> Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row (float64), chunked."""
    out = []
    for i in range(0, x.shape[0], _CHUNK):
        d = torch.cdist(x[i : i + _CHUNK], x)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself (0)
    return torch.cat(out)


def _inside_counts(points: Tensor, centres: Tensor, radii: Tensor) -> tuple[Tensor, Tensor]:
    """Per point, how many balls B(centre_i, radius_i) contain it; per ball, whether any point."""
    counts = torch.zeros(points.shape[0], dtype=torch.long)
    covered = torch.zeros(centres.shape[0], dtype=torch.bool)
    for i in range(0, points.shape[0], _CHUNK):
        inside = torch.cdist(points[i : i + _CHUNK], centres) <= radii[None, :]
        counts[i : i + _CHUNK] = inside.sum(1)
        covered |= inside.any(0)
    return counts, covered


def precision_recall(
    real: Tensor | np.ndarray, fake: Tensor | np.ndarray, k: int = 5
) -> PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al., 2019) of ``fake`` against ``real``
    features, both ``(n, d)``; ``k`` nearest neighbours (default 5 as in Naeem et al.; the
    original uses 3). Precision near 1 with low recall means mode dropping; both low, a shift."""
    r, f = _check(real, fake, k)
    in_real, _ = _inside_counts(f, r, knn_radii(r, k))
    in_fake, _ = _inside_counts(r, f, knn_radii(f, k))
    return PrecisionRecall(
        float((in_real > 0).double().mean()), float((in_fake > 0).double().mean())
    )


def density_coverage(
    real: Tensor | np.ndarray, fake: Tensor | np.ndarray, k: int = 5
) -> DensityCoverage:
    """Density and coverage (Naeem et al., 2020) of ``fake`` against ``real`` features; ``k``
    nearest neighbours (default 5, the paper's choice)."""
    r, f = _check(real, fake, k)
    counts, covered = _inside_counts(f, r, knn_radii(r, k))
    return DensityCoverage(
        float(counts.double().sum() / (k * f.shape[0])), float(covered.double().mean())
    )
