"""Unbiased maximum mean discrepancy with a sum of Gaussian (RBF) kernels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

BANDWIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)  #: multiples of the median distance, by default
_MEDIAN_POINTS = 1024


def median_distance(x: Tensor, y: Tensor) -> float:
    """Median pairwise Euclidean distance of the pooled samples (up to 1024 evenly strided points)."""
    z = torch.cat([x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)]).to(torch.float64)
    z = z[:: max(1, z.shape[0] // _MEDIAN_POINTS)][:_MEDIAN_POINTS]
    i, j = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    return float(torch.cdist(z, z)[i, j].median())


def _block_sum(d2: Tensor, scales: Tensor, ladder: bool) -> Tensor:
    """sum over the block and the kernels of exp(-d2 * s); overwrites ``d2``.

    With scales s_j = 4^j s_0 (the default bandwidth ladder) one exp serves all kernels:
    exp(-4 d2 s) = exp(-d2 s)^4, two in-place squarings (5x faster, relative error < 1e-13).
    """
    if not ladder:
        return sum(torch.exp(-d2 * s).sum() for s in scales)
    e = torch.exp(d2.mul_(-scales[0]))
    total = e.sum()
    for _ in range(scales.numel() - 1):
        total = total + e.square_().square_().sum()
    return total


def _kernel_sum(a: Tensor, b: Tensor, scales: Tensor, chunk: int, same: bool) -> Tensor:
    """sum_{i != j} k(a_i, b_j) if ``same`` (a is b), else sum_{i, j} k(a_i, b_j); blockwise."""
    ratios = scales[1:] / scales[:-1]
    ladder = bool(((ratios - 4).abs() < 1e-12).all())
    total = a.new_zeros(())
    for i in range(0, a.shape[0], chunk):
        for j in range(i if same else 0, b.shape[0], chunk):
            d2 = torch.cdist(a[i : i + chunk], b[j : j + chunk]).square_()
            if same and i == j:
                d2.fill_diagonal_(0.0)
            block = _block_sum(d2, scales, ladder)
            total = total + (2 * block if same and j != i else block)
    if same:
        total = (
            total - a.shape[0] * scales.numel()
        )  # drop the diagonal terms k(a_i, a_i) = #kernels
    return total


def mmd(
    x: Tensor,
    y: Tensor,
    bandwidths: Sequence[float] | None = None,
    chunk_size: int = 2048,
) -> float:
    """Unbiased MMD^2 with k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2)).

    MMD_u^2 = 1/(n(n-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j)
    - 2/(n m) sum_{i,j} k(x_i, y_j); Gretton et al. (2012), JMLR 13, Lemma 6 (Eq. 3).
    It is unbiased, so it is zero in expectation for equal distributions and may be negative.

    Args:
        x: samples ``(n, ...)``, any rank (flattened), n >= 2.
        y: samples ``(m, ...)`` with the same event size, m >= 2.
        bandwidths: kernel widths h; default the median heuristic: the median pairwise distance
            of the pooled samples times (1/4, 1/2, 1, 2, 4).
        chunk_size: block size of the pairwise computation; memory is O(chunk_size^2), so
            10^4 - 10^5 samples are fine. Computed in float64 on the device of ``x``.

    Noise floor (two independent exact sets of size n, ``noise_floor``): the mean is 0, the
    spread is the floor. eight_gaussians(), default bandwidths: std 1.6e-4 and |MMD^2| 95 %
    quantile 3.1e-4 at n = 20 000 (10 repeats); std 1.3e-3 at n = 2000 and 7.1e-4 at n = 4000
    (40 repeats): std ~ 3 / n. Cost: ~7 s at n = 20 000, ~1.5 s at n = 10 000 on 2 CPU cores.
    """
    xf = x.reshape(x.shape[0], -1).to(torch.float64)
    yf = y.reshape(y.shape[0], -1).to(device=xf.device, dtype=torch.float64)
    if xf.shape[0] < 2 or yf.shape[0] < 2:
        raise ValueError(f"x and y need >= 2 samples each, got {xf.shape[0]} and {yf.shape[0]}")
    if xf.shape[1] != yf.shape[1]:
        raise ValueError(
            f"x and y must have the same event size, got {xf.shape[1]} and {yf.shape[1]}"
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if bandwidths is None:
        med = median_distance(xf, yf)
        if not med > 0:
            raise ValueError("the median pairwise distance is 0: give bandwidths explicitly")
        bandwidths = [f * med for f in BANDWIDTH_FACTORS]
    h = torch.as_tensor(list(bandwidths), dtype=torch.float64, device=xf.device).reshape(-1)
    if h.numel() < 1 or not bool((h > 0).all()) or not bool(torch.isfinite(h).all()):
        raise ValueError(
            f"bandwidths must be a non-empty list of finite values > 0, got {bandwidths}"
        )
    scales = torch.sort(1 / (2 * h**2)).values
    n, m = xf.shape[0], yf.shape[0]
    kxx = _kernel_sum(xf, xf, scales, chunk_size, same=True) / (n * (n - 1))
    kyy = _kernel_sum(yf, yf, scales, chunk_size, same=True) / (m * (m - 1))
    kxy = _kernel_sum(xf, yf, scales, chunk_size, same=False) / (n * m)
    return float(kxx + kyy - 2 * kxy)
