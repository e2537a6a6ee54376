"""Exact sample-quality measures against a Gaussian mixture in any dimension, with their floors.

The histogram TV needs 1-D or 2-D data. These four measures need only the exact law
p = sum_k w_k N(mu_k, S_k), in 64, 784 or 3,072 dimensions alike:

- ``mode_tv``: each sample goes to its most responsible component, argmax_k w_k N_k(x) (the
  exact posterior); TV = 1/2 sum_k |n_k / n - w_k| between that histogram and the weights.
- ``radius_ks``: the whitened squared distance to the assigned mean, r = |L_k^-1 (x - mu_k)|^2
  with S_k = L_k L_k^T (isotropic and diagonal components: per-axis stds), is chi^2 with D
  degrees of freedom for exact samples; the measure is the KS distance of the pooled r to that law.
- ``mean_error``: per mode k the whitened mean error e_k = L_k^-1 (mean of its samples - mu_k);
  the measure is max_k sqrt(n_k |e_k|^2 / D), each term sqrt(chi^2_D / D) for exact samples
  (about 1). ``mean_errors`` keeps the plain RMS per-axis error |e_k| / sqrt(D) of every mode,
  in units of its stds (nan for an empty mode).
- ``logp_ks``: the two-sample KS distance between log p(x) over the samples and log p(y) over
  exact samples y of the same law (``reference``, by default n fresh draws).

Every floor is the measure's law for exact samples at the same n, and it depends only on n, the
reference size, D and the weights: KS distances of exact samples are distribution-free, the
assignment is exact for well separated modes (all presets: >= 15 stds apart), n_k is
multinomial and n_k |e_k|^2 is chi^2_D. ``exact_floors`` simulates those laws (cheap: uniform
and chi^2 draws, not the mixture); the tests check that exact mixture samples sit at them.
Judge a sampler against the law at its own end point: one that stops at eps against
``mixture.at(eps, sde)``, one that denoises to sigma = 0 against ``mixture``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from ..mixture import GaussianMixture
from .floor import NoiseFloor

MEASURES = ("mode_tv", "radius_ks", "mean_error", "logp_ks")  #: names of the four measures
_CHUNK_ELEMENTS = 1 << 23  # bound on the (B, K, D) work array


@dataclass(frozen=True)
class ExactMeasures:
    """The four measures of one sample set (see the module docstring), plus per-mode detail."""

    mode_tv: float
    radius_ks: float
    mean_error: float
    logp_ks: float
    mode_counts: tuple[int, ...]
    mean_errors: tuple[float, ...]

    def values(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in MEASURES}


@dataclass(frozen=True)
class ExactReport:
    """Measures of one sample set, their floors at the same n and ``ratios`` = value / floor mean."""

    measures: ExactMeasures
    floors: dict[str, NoiseFloor]
    ratios: dict[str, float]

    @property
    def worst(self) -> float:
        """The largest ratio over the four measures (1: indistinguishable from exact sampling)."""
        return max(self.ratios.values())


def _flat(x: Tensor, mixture: GaussianMixture) -> Tensor:
    if not isinstance(x, Tensor) or tuple(x.shape[1:]) != mixture.event_shape or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(
            f"samples must have shape (n, *{mixture.event_shape}), n >= 1, got {shape}"
        )
    x = x.detach().to("cpu", torch.float64).reshape(x.shape[0], mixture.dim)
    if not torch.isfinite(x).all():
        raise ValueError("samples must be finite")
    return x


def _whiten(mixture: GaussianMixture, diff: Tensor) -> Tensor:
    """L_k^-1 diff for diff ``(B, K, D)``: divide by per-axis stds, or solve with the Cholesky factor."""
    if mixture.kind == "full":
        chol = torch.linalg.cholesky(mixture.component_covs())  # (K, D, D)
        z = torch.linalg.solve_triangular(chol[None], diff[..., None], upper=False)
        return z[..., 0]
    return diff / mixture.component_stds()[None]


def _log_det(mixture: GaussianMixture) -> Tensor:
    """log |S_k|, shape (K,)."""
    if mixture.kind == "full":
        return torch.linalg.slogdet(mixture.component_covs())[1]
    return 2 * mixture.component_stds().log().sum(-1)


def posterior_statistics(x: Tensor, mixture: GaussianMixture) -> tuple[Tensor, Tensor, Tensor]:
    """Assigned component, log p(x) and the whitened residual to the assigned mean, in float64.

    Returns ``(k, log_p, z)`` of shapes ``(n,)``, ``(n,)``, ``(n, D)``: k = argmax_k (log w_k +
    log N_k(x)), log p = logsumexp_k of the same, z = L_k^-1 (x - mu_k) for the assigned k.
    """
    xf = _flat(x, mixture)
    mu = mixture.means.reshape(mixture.n_components, mixture.dim)
    log_w, log_det = mixture.weights.log(), _log_det(mixture)
    const = -0.5 * (log_det + mixture.dim * math.log(2 * math.pi))
    chunk = max(1, _CHUNK_ELEMENTS // (mixture.n_components * mixture.dim))
    ks, log_ps, zs = [], [], []
    for i in range(0, xf.shape[0], chunk):
        z = _whiten(mixture, xf[i : i + chunk, None, :] - mu[None])  # (B, K, D)
        logits = log_w + const - 0.5 * (z**2).sum(-1)
        k = logits.argmax(dim=1)
        ks.append(k)
        log_ps.append(torch.logsumexp(logits, dim=1))
        zs.append(z[torch.arange(k.numel()), k])
    return torch.cat(ks), torch.cat(log_ps), torch.cat(zs)


def exact_measures(
    x: Tensor,
    mixture: GaussianMixture,
    reference: Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    reference_log_p: Tensor | None = None,
) -> ExactMeasures:
    """The four exact measures of samples ``x`` ``(n, *event_shape)`` against ``mixture``.

    Args:
        x: the samples, any float dtype (evaluated in float64 on the CPU).
        mixture: the law they should follow; for a sampler stopping at eps, ``mixture.at(eps, sde)``.
        reference: exact samples of ``mixture`` for ``logp_ks``; default n fresh draws from
            ``generator`` (seed 0 when None). The floor of ``logp_ks`` depends on its size.
        reference_log_p: log p over the reference, from :func:`posterior_statistics`; given,
            it replaces ``reference`` (to reuse one reference across samplers).
    """
    k, log_p, z = posterior_statistics(x, mixture)
    n, K, D = k.numel(), mixture.n_components, mixture.dim
    counts = torch.bincount(k, minlength=K)
    mode_tv = 0.5 * float((counts / n - mixture.weights).abs().sum())
    radius = (z**2).sum(-1).numpy()
    radius_ks = float(_ks_uniform(stats.chi2(D).cdf(radius)))
    sums = torch.zeros(K, D, dtype=torch.float64).index_add_(0, k, z)
    e = sums / counts.clamp(min=1)[:, None]
    sq = (e**2).sum(-1)
    seen = counts > 0
    mean_error = float((counts[seen] * sq[seen] / D).sqrt().max())
    mean_errors = torch.where(seen, (sq / D).sqrt(), torch.full_like(sq, math.nan))
    if reference_log_p is None:
        if reference is None:
            gen = torch.Generator().manual_seed(0) if generator is None else generator
            reference = mixture.sample(n, gen, dtype=torch.float64)
        reference_log_p = posterior_statistics(reference, mixture)[1]
    logp_ks = _ks_two(log_p.numpy(), reference_log_p.detach().cpu().double().numpy())
    return ExactMeasures(
        mode_tv=mode_tv,
        radius_ks=radius_ks,
        mean_error=mean_error,
        logp_ks=logp_ks,
        mode_counts=tuple(int(c) for c in counts),
        mean_errors=tuple(float(v) for v in mean_errors),
    )


def _floor(values: np.ndarray) -> NoiseFloor:
    return NoiseFloor(
        mean=float(values.mean()),
        std=float(values.std(ddof=1)),
        q95=float(np.quantile(np.abs(values), 0.95)),
        values=tuple(float(v) for v in values),
    )


def _ks_uniform(u: np.ndarray) -> np.ndarray:
    """One-sample KS distance to U(0, 1) of each row of ``u`` (the KS of F(x) for x ~ F)."""
    u = np.sort(u, axis=-1)
    n = u.shape[-1]
    i = np.arange(1, n + 1)
    return np.maximum((i / n - u).max(axis=-1), (u - (i - 1) / n).max(axis=-1))


def _ks_two(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS distance sup |F_a - F_b| between the empirical CDFs of a and b."""
    a, b = np.sort(a), np.sort(b)
    both = np.concatenate([a, b])
    fa = np.searchsorted(a, both, side="right") / a.size
    fb = np.searchsorted(b, both, side="right") / b.size
    return float(np.abs(fa - fb).max())


def exact_floors(
    mixture: GaussianMixture,
    n: int,
    n_reference: int | None = None,
    repeats: int = 2000,
    seed: int = 0,
) -> dict[str, NoiseFloor]:
    """The law of each measure for n exact samples (and ``n_reference`` exact reference draws).

    Simulated from the distribution-free null laws (module docstring), ``repeats`` times:
    mode_tv from multinomial counts, radius_ks from n uniforms, mean_error from multinomial
    counts and chi^2_D draws, logp_ks from two uniform sets. Standard error of each mean:
    ``std / sqrt(repeats)`` (about 0.5 % at the default).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    m = n if n_reference is None else n_reference
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"n_reference must be an integer >= 1, got {m!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"repeats must be an integer >= 2, got {repeats!r}")
    rng = np.random.default_rng(seed)
    w, D = mixture.weights.numpy(), mixture.dim
    counts = rng.multinomial(n, w, size=repeats)
    mode_tv = 0.5 * np.abs(counts / n - w).sum(axis=1)
    chi = rng.chisquare(D, size=counts.shape)
    mean_error = np.where(counts > 0, np.sqrt(chi / D), 0.0).max(axis=1)
    radius_ks, logp_ks = np.empty(repeats), np.empty(repeats)
    block = max(1, (1 << 22) // max(n, m))
    for i in range(0, repeats, block):
        b = min(block, repeats - i)
        radius_ks[i : i + b] = _ks_uniform(rng.random((b, n)))
        for j in range(b):  # two-sample KS of two uniform sets: distribution-free
            logp_ks[i + j] = _ks_two(rng.random(n), rng.random(m))
    return {
        "mode_tv": _floor(mode_tv),
        "radius_ks": _floor(radius_ks),
        "mean_error": _floor(mean_error),
        "logp_ks": _floor(logp_ks),
    }


def exact_report(
    x: Tensor,
    mixture: GaussianMixture,
    reference: Tensor | None = None,
    generator: torch.Generator | None = None,
    floors: dict[str, NoiseFloor] | None = None,
) -> ExactReport:
    """:func:`exact_measures` of ``x`` with :func:`exact_floors` at the same n and value/floor ratios.

    Pass ``floors`` (from ``exact_floors(mixture, n, n_reference)``) to reuse them across samplers.
    """
    measures = exact_measures(x, mixture, reference, generator)
    if floors is None:
        n_ref = x.shape[0] if reference is None else reference.shape[0]
        floors = exact_floors(mixture, x.shape[0], n_ref)
    ratios = {name: getattr(measures, name) / floors[name].mean for name in MEASURES}
    return ExactReport(measures=measures, floors=floors, ratios=ratios)
