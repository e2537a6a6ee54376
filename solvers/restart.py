"""Restart sampling: the probability-flow ODE, re-noised by the exact forward kernel and re-solved."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ._exponential import log_snr, marginal_at, time_at_log_snr
from .base import Solver
from .equation import Equation
from .grids import LogSNRGrid
from .noise import NoiseSource
from .unipc import UniPC


class _InnerOrder:
    """``order`` = that of ``inner`` on an instance (the restarts add exact noise and more steps
    of the same ODE solver); on the class, that of the default inner solver."""

    def __get__(self, obj: Restart | None, cls: type | None = None) -> float:
        return float((obj.inner if obj is not None else UniPC()).order)


@dataclass(frozen=True)
class Restart(Solver):
    """Restart sampling (Xu et al., 2023, NeurIPS, Alg. 1): one restart interval, K restarts.

    The main path solves the probability-flow ODE on the grid with ``inner``. At t_min, the
    first grid time at noise level sigma/alpha <= ``level_min`` (a grid that never gets that
    low, e.g. a piece of a RePaint schedule, makes no restart), it restarts ``restarts`` times:
    jump up to t_max, the time at noise level ``level`` (clipped to the grid's start), with the
    exact forward kernel of x_t = alpha_t x_0 + sigma_t z,

        x_tmax = (alpha_max / alpha_min) x_tmin + sqrt(sigma_max^2 - (alpha_max/alpha_min)^2
                 sigma_min^2) xi,   xi ~ N(0, I),

    then solve the ODE back to t_min in ``restart_steps`` steps of ``inner``, uniform in log-SNR.
    Each restart solve is started on the restart grid followed by the rest of the main grid, and
    the main path goes on with the last one's state (a multistep history of the new path). The
    jump is exact, so the only new error is the ODE's; the fresh noise contracts the error the
    path carried into t_min (Xu et al., Thm. 2): for Gaussian data N(mu, s^2), a variance error
    d at t_min leaves (s^2 + l_min^2)/(s^2 + l^2) d per restart (l: noise levels; tested).

    NFE: the main steps' plus ``restarts * restart_steps`` (with a 1-NFE-per-step ``inner``).
    t_min, t_max and the restart grid are found in ``init`` (on the host once, before any step).

    Args:
        inner: a deterministic fixed-step ODE solver that uses the marginal (UniPC by default).
        level: the noise level the restarts jump to (default 0.3).
        level_min: where the restarts start, in (0, level) (default 0.06: Xu et al.'s interval
            [0.06, 0.30] for data in [-1, 1]).
        restarts: K >= 1 restarts.
        restart_steps: >= 1 steps of ``inner`` per restart solve.
        grid: the main path's default time grid.
    """

    order: ClassVar[float] = _InnerOrder()  # type: ignore[assignment]
    stochastic: ClassVar[bool] = True
    equation: ClassVar[str] = "ode"
    requires: ClassVar[tuple[str, ...]] = ("score", "marginal")

    inner: Solver = field(default_factory=UniPC)
    level: float = 0.3
    level_min: float = 0.06
    restarts: int = 1
    restart_steps: int = 4
    grid: Callable[..., Tensor] | None = LogSNRGrid()

    def __post_init__(self) -> None:
        inner = self.inner
        if not isinstance(inner, Solver) or inner.stochastic or inner.adaptive:
            raise ValueError(
                f"inner must be a deterministic fixed-step solvers.Solver, got {inner!r}"
            )
        if inner.equation != "ode" or "marginal" not in inner.requires:
            raise ValueError(
                f"inner must be an ODE solver that uses the marginal (UniPC, DPMSolverPP, "
                f"DPMSolver), got {type(inner).__name__}"
            )
        lv = self.level
        if isinstance(lv, bool) or not isinstance(lv, (int, float)) or not 0 < lv < math.inf:
            raise ValueError(f"level must be a noise level sigma/alpha > 0, got {lv!r}")
        lo = self.level_min
        if isinstance(lo, bool) or not isinstance(lo, (int, float)) or not 0 < lo < lv:
            raise ValueError(f"level_min must be a noise level in (0, level), got {lo!r}")
        for name in ("restarts", "restart_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.grid is not None and not callable(self.grid):
            raise ValueError(f"grid must be None or a time grid callable, got {self.grid!r}")

    def grid_solver(self) -> Solver:
        """``inner`` on this solver's grid: the main path, which grid tuning tunes (the
        restarts then run on the tuned main grid)."""
        if any(f.name == "grid" for f in dataclasses.fields(self.inner)):
            return dataclasses.replace(self.inner, grid=self.grid)
        return self.inner

    def check(self, equation: Equation) -> None:
        super().check(equation)
        self.inner.check(equation)

    def restart_grid(self, equation: Equation, t_start: Tensor, t_min: Tensor) -> Tensor:
        """t_max -> t_min in ``restart_steps`` steps uniform in log-SNR; t_max at noise level
        ``level``, or ``t_start`` where that is below it (t_min's level is <= level_min <
        level)."""
        lam_min = log_snr(*marginal_at(equation, t_min))
        lam_start = log_snr(*marginal_at(equation, t_start))
        lam_top = torch.clamp(torch.full_like(lam_min, -math.log(self.level)), min=lam_start)
        u = torch.linspace(0.0, 1.0, self.restart_steps + 1, dtype=lam_min.dtype)
        times = time_at_log_snr(equation, lam_top + u.to(lam_min.device) * (lam_min - lam_top),
                                t_min, t_start)  # fmt: skip
        times[-1] = t_min
        return times

    def init(self, equation: Equation, x: Tensor, grid: Tensor) -> dict[str, Any]:
        if grid[0] < grid[-1]:
            raise ValueError("Restart samples from noise to data: the grid must decrease")
        alpha, sigma = marginal_at(equation, grid)
        below = (sigma / alpha <= self.level_min).nonzero()
        steps = grid.numel() - 1
        at = max(int(below[0, 0]), 1) if below.numel() else steps + 1  # one read, before the steps
        # each restart solve runs on the restart grid followed by the rest of the main grid, so
        # that the last one's solver state carries on along the main path (a multistep history
        # that belongs to the new path, and its order lowered only at the true end)
        onward = None
        if at <= steps:
            onward = torch.cat([self.restart_grid(equation, grid[0], grid[at]), grid[at + 1 :]])
            self.inner.init(equation, x, onward)  # refuses a grid too short for it, before a step
        return {"i": 0, "at": at, "onward": onward, "inner": self.inner.init(equation, x, grid)}

    def step(
        self,
        equation: Equation,
        x: Tensor,
        t: Tensor,
        t_next: Tensor,
        state: dict[str, Any],
        noise: NoiseSource | None,
    ) -> tuple[Tensor, Any]:
        x, inner_state = self.inner.step(equation, x, t, t_next, state["inner"], None)
        i = state["i"] + 1
        if i == state["at"]:  # at t_min: restart, then go on along the last restart's path
            x, inner_state = self._restarts(equation, x, state["onward"], noise)
        return x, {**state, "i": i, "inner": inner_state}

    def _restarts(
        self, equation: Equation, x: Tensor, onward: Tensor, noise: NoiseSource | None
    ) -> tuple[Tensor, Any]:
        if noise is None:
            raise ValueError("Restart draws noise: give integrate a noise source or generator")
        m = self.restart_steps
        alpha_min, sigma_min = marginal_at(equation, onward[m])
        alpha_max, sigma_max = marginal_at(equation, onward[0])
        ratio = alpha_max / alpha_min
        spread = (sigma_max**2 - (ratio * sigma_min) ** 2).clamp_min(0.0).sqrt()
        state = None
        for _ in range(self.restarts):
            x = ratio * x + spread * noise.normal(x)
            state = self.inner.init(equation, x, onward)
            for j in range(m):
                x, state = self.inner.step(equation, x, onward[j], onward[j + 1], state, None)
        return x, state
