"""Shared pieces of the exponential integrators: predictions, log-SNR, phi functions, quadrature.

Everything is written in terms of the forward marginal x_t = alpha(t) x_0 + sigma(t) z and the
score s(x, t) ~ grad log p_t, so it holds for VP, sub-VP and VE alike:

- data prediction  x0_hat = (x + sigma^2 s) / alpha     (Tweedie; Lu et al., 2022b, Eq. 4)
- noise prediction eps_hat = -sigma s                   (Lu et al., 2022, Sec. 2)
- log-SNR          lambda(t) = log(alpha / sigma), decreasing in t.

With these, the probability-flow ODE has the exact variation-of-constants forms
(Lu et al., 2022, Eq. 3.4; Lu et al., 2022b, Eq. 8), for h = lambda_t - lambda_s:

    x_t = alpha_t/alpha_s x_s - sigma_t int_0^h e^(h-u) eps_hat(lambda_s + u) du
    x_t = sigma_t/sigma_s x_s + alpha_t int_0^h e^(u-h) x0_hat(lambda_s + u) du.

All functions take 0-dim (or 1-D) time tensors and never read a value back to the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._utils import batch_time
from .equation import Equation

_SERIES_TERMS = 20  # |z| < 1: the 20-term Taylor series of phi_j is exact to ~1e-19 relative


def marginal_at(equation: Equation, t: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha(t), sigma(t)) shaped like ``t`` (the marginal is called on a 1-D tensor)."""
    alpha, sigma = equation.marginal(t.reshape(-1))
    return alpha.reshape(t.shape), sigma.reshape(t.shape)


def log_snr(alpha: Tensor, sigma: Tensor) -> Tensor:
    """lambda = log(alpha / sigma): half the log signal-to-noise ratio."""
    return alpha.log() - sigma.log()


def step_ends(equation: Equation, t: Tensor, t_next: Tensor) -> tuple[Tensor, ...]:
    """(alpha_s, sigma_s, alpha_t, sigma_t, lambda_s, lambda_t) at the step's two ends."""
    alpha_s, sigma_s = marginal_at(equation, t)
    alpha_t, sigma_t = marginal_at(equation, t_next)
    return alpha_s, sigma_s, alpha_t, sigma_t, log_snr(alpha_s, sigma_s), log_snr(alpha_t, sigma_t)


def data_prediction(equation: Equation, x: Tensor, t: Tensor, alpha: Tensor, sigma: Tensor):
    """x0_hat(x, t) = (x + sigma^2 s(x, t)) / alpha: one score evaluation."""
    return (x + sigma**2 * equation.score(x, batch_time(t, x))) / alpha


def noise_prediction(equation: Equation, x: Tensor, t: Tensor, sigma: Tensor) -> Tensor:
    """eps_hat(x, t) = -sigma s(x, t): one score evaluation."""
    return -sigma * equation.score(x, batch_time(t, x))


def phi(j: int, z: Tensor) -> Tensor:
    """phi_j(z) = sum_i z^i / (i + j)! (phi_0 = e^z, phi_{j+1}(z) = (phi_j(z) - 1/j!) / z).

    Hochbruck & Ostermann (2010), Eq. 2.10. The recursion loses digits like |z|^-j as z -> 0,
    so |z| < 1 uses the Taylor series instead (torch.where, no host sync).
    """
    small = z.abs() < 1
    zs = torch.where(small, z, torch.zeros_like(z))
    term = torch.full_like(z, 1.0 / math.factorial(j))
    series = term
    for i in range(1, _SERIES_TERMS):
        term = term * zs / (i + j)
        series = series + term
    zc = torch.where(small, torch.ones_like(z), z)
    closed = torch.exp(zc) if j == 0 else torch.expm1(zc) / zc
    for k in range(1, j):
        closed = (closed - 1.0 / math.factorial(k)) / zc
    return torch.where(small, series, closed)


def kernel_moments(h: Tensor, n: int, sign: int) -> list[Tensor]:
    """mu_k = int_0^h e^(sign (h - u)) u^k du = k! h^(k+1) phi_{k+1}(sign h), k = 0..n-1.

    sign = -1 is the data-prediction kernel, +1 the noise-prediction kernel.
    """
    return [math.factorial(k) * h ** (k + 1) * phi(k + 1, sign * h) for k in range(n)]


def interpolant_integral(
    nodes: Sequence[Tensor | float], values: Sequence[Tensor], moments: Sequence[Tensor]
) -> Tensor:
    """int_0^h K(u) P(u) du for the polynomial P through (nodes[j], values[j]).

    ``moments[k]`` = int_0^h K(u) u^k du for k < len(nodes). Newton's divided differences
    c_l = P[u_0..u_l] times the integrals of the Newton basis prod_{j<l} (u - u_j), expanded in
    monomials (Hairer, Nørsett & Wanner, 1993, III.1): exact for polynomials of degree < n.
    """
    n = len(nodes)
    if not (len(values) == n and len(moments) >= n and n >= 1):
        raise ValueError("need as many values as nodes and at least as many moments")
    table = list(values)
    coeffs = [table[0]]
    for level in range(1, n):
        table = [
            (table[j + 1] - table[j]) / (nodes[j + level] - nodes[j]) for j in range(n - level)
        ]
        coeffs.append(table[0])
    poly: list[Tensor | float] = [1.0]  # monomial coefficients of the Newton basis polynomial
    total = coeffs[0] * moments[0]
    for level in range(1, n):
        u = nodes[level - 1]
        shifted = [0.0, *poly]
        poly = [shifted[k] - u * (poly[k] if k < len(poly) else 0.0) for k in range(len(shifted))]
        weight = sum(poly[k] * moments[k] for k in range(len(poly)))
        total = total + coeffs[level] * weight
    return total


def time_at_log_snr(equation: Equation, lam: Tensor, t_lo: Tensor, t_hi: Tensor) -> Tensor:
    """t in [t_lo, t_hi] with lambda(t) = lam, by bisection on the device (lambda decreasing).

    ``lam`` may hold several targets; the iteration count is fixed by the dtype (mantissa bits
    + 2), so the bracket shrinks to rounding of t without any host-side test.
    """
    lo = torch.zeros_like(lam) + t_lo
    hi = torch.zeros_like(lam) + t_hi
    for _ in range(round(-math.log2(torch.finfo(lam.dtype).eps)) + 2):
        mid = 0.5 * (lo + hi)
        alpha, sigma = marginal_at(equation, mid)
        later = log_snr(alpha, sigma) < lam  # lambda(mid) below target: the root is earlier
        hi = torch.where(later, mid, hi)
        lo = torch.where(later, lo, mid)
    return 0.5 * (lo + hi)
