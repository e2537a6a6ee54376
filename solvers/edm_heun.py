"""Heun's second-order method in the EDM noise level, with optional churn (Karras et al., 2022)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ._exponential import marginal_at, time_at_log_snr
from ._utils import batch_time
from .base import Solver
from .equation import Equation
from .grids import KarrasGrid
from .noise import NoiseSource


@dataclass(frozen=True)
class _HeunState:
    steps: int
    index: int
    t_max: Tensor  # the grid's start time and noise level: churn never goes above them
    level_max: Tensor


@dataclass(frozen=True)
class EDMHeun(Solver):
    """Heun (explicit trapezoid) on the PF ODE in EDM form: Karras et al. (2022), Algorithms 1-2.

    With y = x/alpha and the noise level l = sigma/alpha (their sigma, Eq. 4 with s(t) = alpha)
    the probability-flow ODE of any SDE with marginal x_t = alpha x_0 + sigma z reads
    dy/dl = (y - D)/l = eps_hat = -sigma s(x, t), D = (x + sigma^2 s)/alpha. A step from l_i:

    - churn (Algorithm 2, lines 5-6): gamma = min(S_churn/N, sqrt(2) - 1) if
      S_tmin <= l_i <= S_tmax else 0; l^ = l_i (1 + gamma) (capped at the grid's first level);
      y^ = y_i + sqrt(l^2 - l_i^2) S_noise z, z ~ N(0, I);
    - Euler: d = eps_hat(x^, t^), y_{i+1} = y^ + (l_{i+1} - l^) d;
    - correction: y_{i+1} = y^ + (l_{i+1} - l^) (d + eps_hat(x_{i+1}, t_{i+1})) / 2.

    Order 2 (global), 2 score evaluations per step. Karras et al. end at l = 0, where the last
    step must be Euler (2N - 1 NFE for N steps); here the grid ends at eps > 0, so every step is
    Heun unless ``final_euler``; Karras' recipe is Heun steps to eps followed by the one-NFE
    Tweedie step (``sample(..., denoise=True)``), which is their Euler step to l = 0.
    The times t^ of the churned levels are found by bisection on the device. With S_churn > 0
    and S_noise > 0 the solver draws noise (the instance's ``stochastic`` is True) and
    converges in distribution only; churn also adds discretisation error (Karras et al.,
    Sec. 4), so it needs more steps than the deterministic method.

    Args:
        S_churn, S_tmin, S_tmax, S_noise: churn parameters of Algorithm 2 (levels in l units).
        final_euler: make the last step a one-NFE Euler step.
        grid: the default time grid for :func:`sde_diffusion.sample` (Karras rho = 7, Eq. 5).
    """

    order: ClassVar[float] = 2.0
    equation: ClassVar[str] = "ode"
    requires: ClassVar[tuple[str, ...]] = ("score", "marginal")
    nfe_per_step: ClassVar[int] = 2  # 1 on the last step with final_euler

    S_churn: float = 0.0
    S_tmin: float = 0.0
    S_tmax: float = math.inf
    S_noise: float = 1.0
    final_euler: bool = False
    grid: Callable[..., Tensor] | None = KarrasGrid(7.0)

    def __post_init__(self) -> None:
        checks = {
            "S_churn": (self.S_churn, self.S_churn >= 0, ">= 0"),
            "S_tmin": (self.S_tmin, self.S_tmin >= 0, ">= 0"),
            "S_tmax": (self.S_tmax, self.S_tmax >= self.S_tmin, ">= S_tmin"),
            "S_noise": (self.S_noise, self.S_noise >= 0, ">= 0"),
        }
        for name, (value, ok, bound) in checks.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
                raise ValueError(f"{name} must be a number {bound}, got {value!r}")
            if name != "S_tmax" and not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        """True when churn adds noise (S_churn > 0 and S_noise > 0)."""
        return self.S_churn > 0 and self.S_noise > 0

    def init(self, equation: Equation, x: Tensor, grid: Tensor) -> _HeunState:
        alpha, sigma = marginal_at(equation, grid[0])
        return _HeunState(grid.numel() - 1, 0, grid[0], sigma / alpha)

    def step(
        self,
        equation: Equation,
        x: Tensor,
        t: Tensor,
        t_next: Tensor,
        state: _HeunState,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, Any]:
        alpha, sigma = marginal_at(equation, t)
        alpha_n, sigma_n = marginal_at(equation, t_next)
        level, level_n = sigma / alpha, sigma_n / alpha_n
        y = x / alpha
        if self.stochastic:
            gamma = min(self.S_churn / state.steps, math.sqrt(2.0) - 1.0)
            inside = (level >= self.S_tmin) & (level <= self.S_tmax)
            target = torch.where(inside, level * (1.0 + gamma), level)
            target = torch.minimum(target, torch.maximum(state.level_max, level))
            t = time_at_log_snr(equation, -target.log(), t, torch.maximum(t, state.t_max))
            alpha, sigma = marginal_at(equation, t)
            level_hat = sigma / alpha
            extra = (level_hat**2 - level**2).clamp_min(0.0).sqrt()
            y = y + extra * self.S_noise * noise.normal(x)
            level = level_hat
            x = alpha * y
        d = -sigma * equation.score(x, batch_time(t, x))
        y_next = y + (level_n - level) * d
        if not (self.final_euler and state.index == state.steps - 1):
            d_next = -sigma_n * equation.score(alpha_n * y_next, batch_time(t_next, x))
            y_next = y + (level_n - level) * 0.5 * (d + d_next)
        new = _HeunState(state.steps, state.index + 1, state.t_max, state.level_max)
        return alpha_n * y_next, new
