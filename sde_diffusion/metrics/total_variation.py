"""Total variation between a sample histogram and the exact bin masses of a Gaussian mixture.

TV = 1/2 sum_b |n_b / n - P_b| over the bins of a regular 1-D or 2-D grid plus one extra bin for
everything outside the grid, so the value is an exact TV between two discrete distributions,
in [0, 1]. Exact samples do not give 0: a histogram of n draws deviates from its masses by the
multinomial noise, whose expectation ``tv_noise_floor`` gives exactly. ``tv_to_mixture``
reports TV, that floor and their ratio (about 1 for a perfect sampler).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..mixture import GaussianMixture

DEFAULT_BINS = {1: 128, 2: 64}  #: bins per axis: floors ~0.025 (1-D), ~0.09 (2-D) at n = 20 000
RANGE_STDS = 4.0  #: default range: min_k (mu_k - 4 s_k) to max_k (mu_k + 4 s_k) per axis
_GAUSS_NODES = 16  #: Gauss-Legendre nodes per bin for full-covariance 2-D masses


@dataclass(frozen=True)
class TVResult:
    """``tv``: TV to the mixture; ``floor``: its expectation for exact samples; ``ratio`` = tv / floor."""

    tv: float
    floor: float
    ratio: float


def default_range(mixture: GaussianMixture) -> list[tuple[float, float]]:
    """Per axis (min_k mu_kd - 4 s_kd, max_k mu_kd + 4 s_kd): fixed by the mixture, not the samples."""
    mu, s = mixture.means.reshape(mixture.n_components, -1), mixture.component_stds()
    lo = (mu - RANGE_STDS * s).amin(dim=0)
    hi = (mu + RANGE_STDS * s).amax(dim=0)
    return [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]


def _edges(
    mixture: GaussianMixture, bins: int | Sequence[int] | None, range: object
) -> list[Tensor]:
    D = mixture.dim
    if D not in (1, 2):
        raise ValueError(f"total_variation needs a 1-D or 2-D mixture, got event size {D}")
    bins = DEFAULT_BINS[D] if bins is None else bins
    bins = [bins] * D if isinstance(bins, int) else list(bins)
    if len(bins) != D or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in bins):
        raise ValueError(f"bins must be an integer >= 1 or {D} of them, got {bins!r}")
    if range is None:
        range = default_range(mixture)
    range = np.asarray(range, dtype=np.float64).reshape(-1, 2)
    if range.shape[0] != D or not np.all(np.isfinite(range)) or np.any(range[:, 1] <= range[:, 0]):
        raise ValueError(
            f"range must be {D} finite (lo, hi) pair(s) with lo < hi, got {range.tolist()}"
        )
    return [
        torch.linspace(lo, hi, b + 1, dtype=torch.float64)
        for (lo, hi), b in zip(range, bins, strict=True)
    ]


def _normal_cdf_diff(edges: Tensor, mu: Tensor, s: Tensor) -> Tensor:
    """P(edge_i < N(mu_k, s_k^2) < edge_{i+1}), shape (K, bins)."""
    return torch.diff(torch.special.ndtr((edges[None, :] - mu[:, None]) / s[:, None]), dim=1)


def bin_masses(mixture: GaussianMixture, edges: Sequence[Tensor]) -> Tensor:
    """Exact mixture mass of every grid bin, shape ``(bins_1[, bins_2])``, float64.

    Axis-aligned components: a product of normal CDF differences. Full covariance (2-D): the
    mass of [a, b] x [c, d] is int_a^b N(x; mu_1, S_11) P(c < X_2 < d | X_1 = x) dx, where the
    conditional is normal, so the inner integral is exact (ndtr) and only the outer, smooth one
    is numerical: 16-point Gauss-Legendre per bin. It agrees with 64 points to 1e-16 per bin
    for correlations up to 0.999 (conditional std 0.36 bins) and with scipy's bivariate CDF to
    1e-16 (tests).
    """
    w, s = mixture.weights, mixture.component_stds()
    mu = mixture.means.reshape(w.numel(), -1)
    per_axis = [_normal_cdf_diff(e, mu[:, d], s[:, d]) for d, e in enumerate(edges)]
    if len(edges) == 1:
        return w @ per_axis[0]
    if mixture.kind != "full":
        return torch.einsum("k,ki,kj->ij", w, per_axis[0], per_axis[1])
    cov = mixture.covs
    e1, e2 = edges
    node, node_w = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(_GAUSS_NODES))
    half = torch.diff(e1)[:, None] / 2
    x = (e1[:-1, None] + half + half * node[None, :]).reshape(-1)  # (bins_1 * G,)
    slope = cov[:, 0, 1] / cov[:, 0, 0]
    cond_std = (cov[:, 1, 1] - slope * cov[:, 0, 1]).sqrt()
    cond_mean = mu[:, 1, None] + slope[:, None] * (x[None, :] - mu[:, 0, None])  # (K, bins_1 * G)
    cdf = torch.special.ndtr((e2[None, None, :] - cond_mean[:, :, None]) / cond_std[:, None, None])
    inner = torch.diff(cdf, dim=2)  # (K, bins_1 * G, bins_2)
    sd1 = s[:, 0, None]
    dens = torch.exp(-0.5 * ((x[None, :] - mu[:, 0, None]) / sd1) ** 2) / (
        sd1 * math.sqrt(2 * math.pi)
    )
    quad = (half * node_w[None, :]).reshape(-1)  # (bins_1 * G,)
    per_k = (dens * quad)[:, :, None] * inner
    return torch.einsum(
        "k,kij->ij", w, per_k.reshape(w.numel(), len(e1) - 1, _GAUSS_NODES, -1).sum(2)
    )


def _histogram(samples: Tensor, edges: Sequence[Tensor]) -> tuple[Tensor, int]:
    """Counts of ``samples`` (n, D) in the half-open bins [e_i, e_{i+1}); second: the count outside."""
    x = samples.detach().reshape(samples.shape[0], -1).to(device="cpu", dtype=torch.float64)
    flat = torch.zeros(x.shape[0], dtype=torch.long)
    inside = torch.ones(x.shape[0], dtype=torch.bool)
    for d, e in enumerate(edges):
        b = e.numel() - 1
        idx = torch.floor((x[:, d] - e[0]) / (e[-1] - e[0]) * b)
        inside &= (idx >= 0) & (idx < b)
        flat = flat * b + idx.clamp(0, b - 1).long()
    shape = [e.numel() - 1 for e in edges]
    counts = torch.bincount(flat[inside], minlength=math.prod(shape)).reshape(shape)
    return counts.to(torch.float64), int((~inside).sum())


def _check_samples(samples: Tensor, mixture: GaussianMixture) -> None:
    if not isinstance(samples, Tensor) or samples.ndim < 1 or samples.shape[0] < 1:
        raise ValueError("samples must be a tensor of shape (n, ...) with n >= 1")
    if samples[0].numel() != mixture.dim:
        raise ValueError(f"samples have event size {samples[0].numel()}, the mixture {mixture.dim}")
    if not bool(torch.isfinite(samples).all()):
        raise ValueError("samples must be finite")


def _tv_parts(
    samples: Tensor, mixture: GaussianMixture, bins: object, range: object
) -> tuple[float, Tensor]:
    _check_samples(samples, mixture)
    edges = _edges(mixture, bins, range)
    masses = bin_masses(mixture, edges).reshape(-1)
    masses = torch.cat([masses, (1 - masses.sum()).clamp_min(0).reshape(1)])
    counts, outside = _histogram(samples, edges)
    freq = torch.cat([counts.reshape(-1), torch.tensor([float(outside)], dtype=torch.float64)])
    freq = freq / samples.shape[0]
    return float(0.5 * (freq - masses).abs().sum()), masses


def total_variation(
    samples: Tensor,
    mixture: GaussianMixture,
    bins: int | Sequence[int] | None = None,
    range: Sequence[float] | Sequence[Sequence[float]] | None = None,
) -> float:
    """TV between the histogram of ``samples`` and the mixture's exact bin masses, in [0, 1].

    Args:
        samples: ``(n, 1)``/``(n,)`` for a 1-D mixture, ``(n, 2)`` for a 2-D one.
        mixture: the target :class:`GaussianMixture` (event size 1 or 2, any covariance kind).
        bins: per axis; default 128 (1-D) or 64 x 64 (2-D).
        range: ``(lo, hi)`` (1-D) or one pair per axis; default from the mixture alone:
            min_k(mu_k - 4 s_k) .. max_k(mu_k + 4 s_k) per axis. Mass outside is one extra bin.

    Noise floor (``tv_noise_floor``, exact): at n = 20 000, 0.0898 for eight_gaussians() (64 x 64)
    and 0.0250 for bimodal_1d() (128 bins); 0.269 and 0.079 at n = 2000. It shrinks like
    n^(-1/2) while n p_b >> 1 and grows like the square root of the number of occupied bins.
    """
    return _tv_parts(samples, mixture, bins, range)[0]


def tv_noise_floor(masses: Tensor, n: int) -> float:
    """E[TV] of a histogram of n exact draws against its own masses: 1/2 sum_b E|X_b/n - p_b|.

    X_b ~ Binomial(n, p_b), and the mean absolute deviation is exact (De Moivre; Diaconis &
    Zabell, 1991, Eq. 1.1): E|X - np| = 2 (k+1) C(n, k+1) p^(k+1) (1-p)^(n-k), k = floor(np).
    For n p (1-p) >> 1 it approaches the normal value sqrt(2 p (1-p) n / pi).
    ``masses`` must include the outside bin and sum to 1.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    p = torch.as_tensor(masses, dtype=torch.float64).reshape(-1)
    if (p < 0).any() or abs(float(p.sum()) - 1) > 1e-6:
        raise ValueError("masses must be non-negative and sum to 1 (include the outside bin)")
    p = p[(p > 0) & (p < 1)]
    k = torch.floor(n * p).clamp(max=n - 1)
    log_mad = (
        math.log(2)
        + torch.log(k + 1)
        + math.lgamma(n + 1)
        - torch.lgamma(k + 2)
        - torch.lgamma(n - k)
        + (k + 1) * torch.log(p)
        + (n - k) * torch.log1p(-p)
    )
    return float(0.5 * log_mad.exp().sum() / n)


def tv_to_mixture(
    samples: Tensor,
    mixture: GaussianMixture,
    bins: int | Sequence[int] | None = None,
    range: Sequence[float] | Sequence[Sequence[float]] | None = None,
) -> TVResult:
    """TV to the mixture, the exact-sample floor at this n, and the ratio tv / floor (~1: perfect)."""
    tv, masses = _tv_parts(samples, mixture, bins, range)
    floor = tv_noise_floor(masses, samples.shape[0])
    return TVResult(tv=tv, floor=floor, ratio=tv / floor if floor > 0 else math.inf)
