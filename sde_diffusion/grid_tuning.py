"""Tune a deterministic sampler's time grid to a score model, without data.

An optimised schedule per model (Sabour et al., 2024, "Align Your Steps"; Chen et al., 2024,
GITS) buys accuracy at a fixed, small NFE. Here the N - 1 interior noise levels of an N-step
grid are chosen to minimise the solver's endpoint error on a pilot batch of prior draws,
measured against a fine solve from the same draws, so only the score model is needed:

    J(grid) = trimmed mean_i  w_i |x_i(grid) - x_i^ref|^2,   w_i = max(0, -div s(x_i^ref, eps) / D).

- The curvature weight w (``weight="curvature"``; 1/s^2 inside a Gaussian mode of width s)
  counts an error relative to the width of the mode it lands in, as the density does: a narrow
  mode shrunk by 5 % costs as much as a wide one.
- Trimming drops the largest ``trim`` fraction of errors: draws that the coarse and the fine
  solve send to different modes. Such swaps are near-symmetric and barely move the
  distribution, but their squared errors would outweigh everything else.

The levels are parametrised by the softmax of the log-level increments, so any parameter
gives a strictly decreasing grid between the fixed ends, and searched by Powell's method from
the solver's own grid (scipy). The result is a :class:`solvers.grids.TabulatedGrid` to pass as
``sample(..., grid=...)``; its one-off cost in score evaluations is reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch
from torch import Tensor
from tqdm.auto import tqdm

from solvers.base import Solver
from solvers.grids import TabulatedGrid, UniformGrid

from .divergence import EXACT_MAX_DIM, divergence, draw_probes
from .reverse import ScoreFn
from .sampling import sample
from .sde.base import SDE

WEIGHTS = ("curvature", "none")
PROBES = 8  #: Hutchinson probes for the curvature weight above 128 dimensions


@dataclass(frozen=True)
class GridTuning:
    """A tuned grid and what it cost.

    ``grid``: the tuned :class:`TabulatedGrid`; ``levels``: its noise levels, start to end;
    ``objective``/``initial_objective``: J on the pilot for the tuned grid and the solver's
    own; ``evaluations``: objective evaluations; ``nfe``: score evaluations spent in all
    (reference solve, curvature weights and search), per pilot sample.
    """

    grid: TabulatedGrid
    levels: tuple[float, ...]
    objective: float
    initial_objective: float
    evaluations: int
    nfe: int


def _check_args(
    solver: Solver,
    steps: int,
    shape: Sequence[int],
    trim: float,
    weight: str,
    max_evals: int,
    batch_size: int | None,
) -> None:
    if solver.equation != "ode" or solver.stochastic or solver.adaptive:
        raise ValueError(
            f"tune_grid tunes fixed-step deterministic (ODE) solvers, got {type(solver).__name__}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(
            f"steps must be an integer >= 2 (a grid with interior levels), got {steps!r}"
        )
    if len(shape) < 2 or shape[0] < 16:
        raise ValueError(f"shape must be (pilot >= 16, *event), got {tuple(shape)}")
    if isinstance(trim, bool) or not isinstance(trim, (int, float)) or not 0 <= trim < 0.5:
        raise ValueError(f"trim must lie in [0.0, 0.5), got {trim!r}")
    if isinstance(max_evals, bool) or not isinstance(max_evals, int) or max_evals < 2:
        raise ValueError(f"max_evals must be an integer >= 2, got {max_evals!r}")
    if weight not in WEIGHTS:
        raise ValueError(f"weight must be one of {WEIGHTS}, got {weight!r}")
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")


def curvature_weight(
    score_fn: ScoreFn, x: Tensor, t: float, *, probes: int = PROBES, batch_size: int | None = None
) -> Tensor:
    """w = max(0, -div_x s(x, t) / D) per sample: exact trace up to 128 dims, Hutchinson above;
    ``batch_size`` samples at a time (the probes are drawn for the whole batch first, so the
    result does not depend on it)."""
    flat = x.reshape(x.shape[0], -1)
    dim = flat.shape[1]
    v = None
    if dim > EXACT_MAX_DIM:
        gen = torch.Generator(device=x.device).manual_seed(0)
        v = draw_probes(probes, *flat.shape, generator=gen, device=x.device, dtype=x.dtype)
    chunk = batch_size or x.shape[0]
    out = []
    for i in range(0, x.shape[0], chunk):
        part = x[i : i + chunk]
        tt = torch.full((part.shape[0],), t, device=x.device, dtype=x.dtype)

        def field(z: Tensor, part: Tensor = part, tt: Tensor = tt) -> Tensor:
            return score_fn(z.reshape(part.shape), tt).reshape(z.shape)

        pf = flat[i : i + chunk]
        if v is None:
            _, div = divergence(field, pf, trace="exact")
        else:
            _, div = divergence(field, pf, trace="hutchinson", probes=v[:, i : i + chunk])
        out.append((-div / dim).clamp(min=0.0).detach())
    return torch.cat(out)


def tune_grid(
    sde: SDE,
    score_fn: ScoreFn,
    solver: Solver,
    steps: int,
    shape: Sequence[int],
    *,
    eps: float | None = None,
    reference_steps: int = 400,
    trim: float = 0.03,
    weight: str = "curvature",
    max_evals: int = 1600,
    seed: int = 1000,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    progress: bool = False,
    batch_size: int | None = None,
) -> GridTuning:
    """Choose the interior noise levels of ``solver``'s ``steps``-step grid for ``score_fn``.

    Args:
        sde, score_fn, solver: as for :func:`sde_diffusion.sample`; a fixed-step ODE solver,
            or one whose main path is one (``solver.grid_solver()``, e.g. ``Restart``).
        steps: steps of the grid to tune (>= 2); other counts interpolate it.
        shape: the pilot batch ``(pilot, *event)``, drawn from the prior with ``seed``.
        eps: the end time, as for :func:`sde_diffusion.sample`; default ``sde.eps``.
        reference_steps: steps of the reference solve (the same solver on its own grid).
        trim: fraction of the largest weighted errors left out, in [0, 0.5).
        weight: ``"curvature"`` or ``"none"`` (plain squared error).
        max_evals: most objective evaluations (each ``steps`` x pilot score evaluations).
        seed, dtype, device, progress: the pilot draw, its precision and place, a bar.
        batch_size: pilot samples integrated at once (default: all); the result does not
            depend on it (the solvers are deterministic and act per sample), the peak memory
            does: a large image model on a small GPU needs a chunked pilot.
    """
    solver = solver.grid_solver()  # e.g. Restart's main path
    _check_args(solver, steps, shape, trim, weight, max_evals, batch_size)
    eps = sde.eps if eps is None else eps
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < sde.T:
        raise ValueError(f"eps must be a number in (0, T) = (0, {sde.T}), got {eps!r}")
    gen = torch.Generator(device=device or "cpu").manual_seed(seed)
    x_T = sde.prior_sample(tuple(shape), generator=gen, device=device, dtype=dtype)

    chunk = batch_size or x_T.shape[0]

    def run(n: int, grid: Callable[..., Tensor] | None = None) -> tuple[Tensor, int]:
        parts, nfe = [], 0
        for part in x_T.split(chunk):
            res = sample(sde, score_fn, solver, part.shape, steps=n, eps=eps, grid=grid,
                         x_init=part, dtype=dtype, device=device, check_finite=False)  # fmt: skip
            parts.append(res.x)
            nfe = res.nfe  # per sample: the same in every chunk
        return torch.cat(parts), nfe

    ref, nfe = run(reference_steps)
    w = torch.ones(x_T.shape[0], device=x_T.device, dtype=dtype)
    if weight == "curvature":
        w = curvature_weight(score_fn, ref, eps, batch_size=batch_size)
        dim = math.prod(shape[1:])
        nfe += 1 + (dim if dim <= EXACT_MAX_DIM else PROBES)
    keep = x_T.shape[0] - math.floor(trim * x_T.shape[0])

    make = getattr(solver, "grid", None) or UniformGrid()
    t0 = make(sde.T, eps, steps, noise_level=sde.noise_level)
    log_ends = sde.noise_level(t0[[0, -1]]).log().tolist()
    z0 = np.log(np.diff(-sde.noise_level(t0).log().numpy()))

    def levels_of(z: np.ndarray) -> tuple[float, ...]:
        w = np.exp(z - z.max())  # softmax: positive increments that sum to 1
        frac = np.concatenate([[0.0], np.cumsum(w / w.sum())])
        return tuple(np.exp(log_ends[0] + (log_ends[1] - log_ends[0]) * frac).tolist())

    best_value, best_levels, evals, search_nfe = math.inf, levels_of(z0), 0, 0
    bar = tqdm(total=max_evals, desc="tuning grid", disable=not progress)

    def objective(z: np.ndarray, strict: bool = False) -> float:
        nonlocal best_value, best_levels, evals, search_nfe
        levels = levels_of(z)
        try:
            x, n = run(steps, TabulatedGrid(levels))
        except ValueError:  # levels collapsed onto each other or an end: not a grid
            if strict:  # the solver's own grid: a real error (e.g. too few steps), raise it
                raise
            return math.inf
        err = w * (x - ref).reshape(x.shape[0], -1).square().sum(dim=1)
        value = float(err.sort().values[:keep].mean())  # NaN sorts last
        value = value if math.isfinite(value) else math.inf
        evals, search_nfe = evals + 1, search_nfe + n
        if value < best_value:
            best_value, best_levels = value, levels
        bar.update(1)
        return value

    initial = objective(z0, strict=True)
    scipy.optimize.minimize(
        objective, z0, method="Powell",
        options={"maxfev": max_evals - 1, "xtol": 1e-3, "ftol": 1e-5},
    )  # fmt: skip
    bar.close()
    return GridTuning(
        grid=TabulatedGrid(best_levels),
        levels=best_levels,
        objective=best_value,
        initial_objective=initial,
        evaluations=evals,
        nfe=nfe + search_nfe,
    )
