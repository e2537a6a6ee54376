"""The one driver that walks a time grid: counts evaluations, checks, calls back, shows progress."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .base import Solver
from .equation import Equation, EvalCounter
from .grids import check_grid
from .noise import GeneratorNoise, NoiseSource

Callback = Callable[[int, Tensor, Tensor], None]


class NonFiniteStateError(FloatingPointError):
    """The state became NaN or infinite during integration."""


@dataclass
class Solution:
    """The result of :func:`integrate`.

    ``x``: the final state; ``nfe``: evaluations of the drift or score actually made;
    ``steps``: accepted steps; ``rejected``: rejected steps (adaptive solvers);
    ``times`` and ``trajectory``: the saved states, ``trajectory[k]`` at ``times[k]``.
    """

    x: Tensor
    nfe: int
    steps: int
    rejected: int = 0
    times: Tensor | None = None
    trajectory: Tensor | None = None


def _merge(grid: Tensor, times: Tensor) -> Tensor:
    """Insert the requested times into a monotone grid (keeping its direction)."""
    lo, hi = grid.min(), grid.max()
    tol = 1e-9 * float(hi - lo)
    # a requested time within rounding of a grid time is that grid time (no zero-length step)
    near = (times[:, None] - grid[None, :]).abs().min(dim=1).values <= tol
    inside = times[(times > lo) & (times < hi) & ~near]
    merged = torch.unique(torch.cat([grid, inside]))
    return merged.flip(0) if bool(grid[0] > grid[-1]) else merged


def integrate(
    solver: Solver,
    equation: Equation,
    x: Tensor,
    grid: Tensor,
    *,
    noise: NoiseSource | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    check_finite: bool = True,
    save_at: str | Sequence[float] | Tensor | None = None,
) -> Solution:
    """Integrate ``equation`` from ``grid[0]`` to ``grid[-1]`` starting at ``x``.

    Fixed-step solvers step on ``grid``; adaptive ones use only its end points. Stochastic
    solvers draw from ``noise`` (default: :class:`GeneratorNoise` on ``generator``).
    ``save_at="grid"`` keeps the state at every grid time; a sequence of times keeps the
    state at those times (inserted into the grid). ``callback(i, t, x)`` runs after step i.

    Fixed-step loops make no host synchronisation: the finiteness check is accumulated on
    the device and read once at the end, when a :class:`NonFiniteStateError` names the first
    step that went non-finite.
    """
    if not isinstance(solver, Solver):
        raise TypeError(f"solver must be a solvers.Solver, got {type(solver).__name__}")
    if x.ndim < 1:
        raise ValueError("x must have a leading batch dimension")
    if not isinstance(grid, Tensor):
        grid = torch.as_tensor(grid, dtype=torch.float64)
    check_grid(grid)
    solver.check(equation)
    if solver.stochastic and noise is None:
        noise = GeneratorNoise(generator)
    counter = EvalCounter()
    eq = equation.counted(counter)

    save_times: Tensor | None = None
    if isinstance(save_at, str):
        if save_at != "grid":
            raise ValueError(
                f"save_at must be 'grid', a sequence of times or None, got {save_at!r}"
            )
        save_times = grid.clone()
    elif save_at is not None:
        save_times = torch.as_tensor(save_at, dtype=grid.dtype).reshape(-1)
        lo, hi = float(grid.min()), float(grid.max())
        if bool(((save_times < lo) | (save_times > hi)).any()):
            raise ValueError(f"save_at times must lie within the grid's span [{lo}, {hi}]")

    if solver.adaptive:
        return _integrate_adaptive(solver, eq, x, grid, noise, counter, save_times, callback)

    if save_times is not None:
        grid = _merge(grid, save_times)
    keep = None
    if save_times is not None:
        keep = {int(torch.argmin((grid - s).abs())) for s in save_times}
    # the grid keeps at least float32 whatever the state's dtype: in float16, 477 of 3,000
    # uniform steps on [1e-3, 1] would round to zero length (solvers cast t for the score)
    grid = grid.to(device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))
    n = grid.numel() - 1
    saved = [x] if keep is not None and 0 in keep else []
    state = solver.init(eq, x, grid)
    bad = torch.full((), -1, device=x.device, dtype=torch.long)
    for i in tqdm(range(n), disable=not progress, desc=type(solver).__name__, leave=False):
        x, state = solver.step(eq, x, grid[i], grid[i + 1], state, noise)
        if check_finite:
            bad = torch.where((bad < 0) & ~torch.isfinite(x).all(), i, bad)
        if keep is not None and i + 1 in keep:
            saved.append(x)
        if callback is not None:
            callback(i, grid[i + 1], x)
    if check_finite:
        first = int(bad)  # the single host read of the loop
        if first >= 0:
            raise NonFiniteStateError(
                f"the state became NaN or inf at step {first} of {n}, from t={float(grid[first]):.6g}"
                f" to t={float(grid[first + 1]):.6g}; pass check_finite=False to integrate anyway"
            )
    times = trajectory = None
    if keep is not None:
        times = grid[sorted(keep)]
        trajectory = torch.stack(saved)
    return Solution(x=x, nfe=counter.n, steps=n, times=times, trajectory=trajectory)


def _integrate_adaptive(solver, eq, x, grid, noise, counter, save_times, callback) -> Solution:
    t_start, t_end = float(grid[0]), float(grid[-1])
    stops = [t_start, t_end]
    if save_times is not None:
        stops = sorted(set(stops) | {float(s) for s in save_times}, reverse=t_start > t_end)
    saved, steps, rejected = [x], 0, 0
    for k in range(len(stops) - 1):
        x, stats = solver.solve(eq, x, stops[k], stops[k + 1], noise)
        steps += stats.get("steps", 0)
        rejected += stats.get("rejected", 0)
        if not bool(torch.isfinite(x).all()):
            raise NonFiniteStateError(
                f"the state became NaN or inf between t={stops[k]:.6g} and t={stops[k + 1]:.6g}"
            )
        saved.append(x)
        if callback is not None:
            callback(k, torch.tensor(stops[k + 1]), x)
    times = trajectory = None
    if save_times is not None:
        times = torch.tensor(stops, dtype=x.dtype)
        trajectory = torch.stack(saved)
    return Solution(
        x=x, nfe=counter.n, steps=steps, rejected=rejected, times=times, trajectory=trajectory
    )
