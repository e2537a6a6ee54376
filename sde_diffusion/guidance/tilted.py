"""The tilted density that classifier-free guidance is often said to sample, on a grid.

    q_w(x) = p(x | y)^(1 + w) p(x)^(-w) / Z_w,    Z_w = int p(x | y)^(1 + w) p(x)^(-w) dx

(Ho & Salimans, 2022, Sec. 3.2: the CFG score s(x|y) + w (s(x|y) - s(x)) is the score of this
density at t = 0 only). At t > 0 the guided score is not the score of the noised q_w, so
guided sampling does not sample q_w (Chidambaram et al., 2024; Bradley & Nakkiran, 2024);
:func:`cfg_against_exact` measures by how much. For w >= 0, p(x) >= pi_y p(x | y) bounds the
integrand by pi_y^(-w) p(x | y), so a grid that covers p(x | y) holds all of q_w but its tails.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..metrics.total_variation import TVResult, _edges, _histogram, tv_noise_floor, tv_to_mixture
from ..mixture import GaussianMixture
from .exact import class_conditional
from .transforms import _scale, cfg_score

_NODES = 8  #: Gauss-Legendre nodes per cell and axis


@dataclass(frozen=True)
class GridDensity:
    """A density normalised on a regular 1-D or 2-D grid.

    ``edges``: the cell edges per axis; ``masses``: the probability of each cell (they sum to
    1: the density is restricted to the grid); ``log_normaliser``: log Z of the unnormalised
    density over the grid.
    """

    edges: tuple[Tensor, ...]
    masses: Tensor
    log_normaliser: float

    def tv(self, samples: Tensor) -> TVResult:
        """TV of the histogram of ``samples`` to the cell masses (mass outside the grid is one
        more cell, of mass 0 here), the exact-sample floor at this n, and their ratio."""
        counts, outside = _histogram(samples, self.edges)
        n = samples.shape[0]
        freq = torch.cat([counts.reshape(-1), torch.tensor([float(outside)], dtype=torch.float64)])
        masses = torch.cat([self.masses.reshape(-1), torch.zeros(1, dtype=torch.float64)])
        tv = float(0.5 * (freq / n - masses).abs().sum())
        floor = tv_noise_floor(masses, n)
        return TVResult(tv=tv, floor=floor, ratio=tv / floor if floor > 0 else math.inf)

    def moments(self) -> tuple[Tensor, Tensor]:
        """Mean ``(D,)`` and covariance ``(D, D)`` of the grid density (cell centres)."""
        centres = [(e[1:] + e[:-1]) / 2 for e in self.edges]
        x = torch.stack([g.reshape(-1) for g in torch.meshgrid(*centres, indexing="ij")], 1)
        p = self.masses.reshape(-1)
        mean = p @ x
        return mean, (x - mean).T @ ((x - mean) * p[:, None])


def _log_density(mixture: GaussianMixture, x: Tensor, t: float | None, sde: Any) -> Tensor:
    if t is None:
        return mixture.log_prob(x)
    return mixture.marginal_log_prob(x, t, sde)


def tilted_density(
    cond: GaussianMixture,
    uncond: GaussianMixture,
    w: float,
    *,
    t: float | None = None,
    sde: Any = None,
    bins: int | Sequence[int] | None = None,
    range: Sequence[float] | Sequence[Sequence[float]] | None = None,
) -> GridDensity:
    """q_w ∝ p_t(x | y)^(1 + w) p_t(x)^(-w), normalised on a grid (1-D or 2-D).

    Args:
        cond: p(x | y), e.g. :func:`~sde_diffusion.guidance.class_conditional`.
        uncond: p(x).
        w: the guidance scale, >= -1 (w = 0: p(x | y); w = -1: p(x)).
        t, sde: take both densities at time t of ``sde`` (e.g. the sampler's end time eps);
            None: at t = 0.
        bins, range: the grid, as for :func:`~sde_diffusion.metrics.total_variation` (default
            128 bins in 1-D, 64 x 64 in 2-D, over the range of ``uncond``).

    Each cell's mass is an 8-point-per-axis Gauss-Legendre quadrature of the density.
    """
    w = _scale("guidance scale w", w)
    if w < -1:
        raise ValueError(f"the tilted density needs w >= -1, got {w}")
    if cond.dim != uncond.dim:
        raise ValueError(f"cond has dimension {cond.dim}, uncond {uncond.dim}")
    if (t is None) != (sde is None):
        raise ValueError("give both t and sde (the densities at time t), or neither")
    edges = _edges(uncond, bins, range)
    node, weight = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(_NODES))
    points, qw = [], []
    for e in edges:
        half = torch.diff(e)[:, None] / 2
        points.append((e[:-1, None] + half * (1 + node[None, :])).reshape(-1))
        qw.append((half * weight[None, :]).reshape(-1))
    grids = torch.meshgrid(*points, indexing="ij")
    x = torch.stack([g.reshape(-1) for g in grids], dim=1)
    logf = (1 + w) * _log_density(cond, x, t, sde) - w * _log_density(uncond, x, t, sde)
    logq = sum(torch.meshgrid(*[q.log() for q in qw], indexing="ij")).reshape(-1)
    logm = (logf + logq).reshape(*[len(p) for p in points])
    for d, e in enumerate(edges):  # sum the nodes of each cell
        shape = list(logm.shape)
        shape[d : d + 1] = [len(e) - 1, _NODES]
        logm = torch.logsumexp(logm.reshape(shape), dim=d + 1)
    log_z = torch.logsumexp(logm.reshape(-1), dim=0)
    return GridDensity(tuple(edges), (logm - log_z).exp(), float(log_z))


def cfg_against_exact(
    mixture: GaussianMixture,
    labels: object,
    label: int,
    w: float,
    sde: Any,
    solver: Any,
    *,
    n: int = 20_000,
    steps: int = 500,
    seed: int = 0,
    bins: int | Sequence[int] | None = None,
) -> dict[str, float]:
    """What CFG with exact mixture scores samples: TV of its samples to the tilted density q_w
    (taken at the end time eps) and to p_eps(x | y), each beside its exact-sample floor at n.

    The guided score is :func:`cfg_score` of the exact s(x, t | y) (of
    :func:`class_conditional`) and the exact s(x, t) of ``mixture``; ``solver`` runs it for
    ``steps`` steps from ``seed``. Returns ``tv_tilted``, ``floor_tilted``, ``tv_cond``,
    ``floor_cond``, the fraction of samples nearest a component of class ``label``
    (``in_class``), and the spread sqrt(trace Cov) of the samples and of q_w.
    """
    from ..sampling import sample

    cond = class_conditional(mixture, labels, label)
    score = cfg_score(cond.score_fn(sde), mixture.score_fn(sde), w)
    gen = torch.Generator().manual_seed(seed)
    x = sample(
        sde, score, solver, (n, mixture.dim), steps=steps, generator=gen, dtype=torch.float64
    )
    eps = float(sde.eps)
    q = tilted_density(cond, mixture, w, t=eps, sde=sde, bins=bins)
    tilted = q.tv(x.x)
    exact = tv_to_mixture(x.x, cond.at(eps, sde), bins=bins, range=[(e[0], e[-1]) for e in q.edges])
    lab = torch.as_tensor(np.asarray(labels))
    nearest = ((x.x[:, None, :] - mixture.means[None]) ** 2).sum(-1).argmin(1)
    return {
        "w": w,
        "tv_tilted": tilted.tv,
        "floor_tilted": tilted.floor,
        "tv_cond": exact.tv,
        "floor_cond": exact.floor,
        "in_class": float((lab[nearest] == label).double().mean()),
        "spread": float(torch.cov(x.x.T).reshape(mixture.dim, -1).trace().sqrt()),
        "spread_tilted": float(q.moments()[1].trace().sqrt()),
        "nfe": int(x.nfe),
    }
