"""Time grids: decreasing tensors ``t_0 = t_start > ... > t_N = t_end``.

Each grid is a small frozen dataclass called as ``grid(t_start, t_end, steps,
noise_level=...)``. ``noise_level(t)`` is the forward process's sigma(t)/alpha(t) (the
EDM noise level, whose inverse is the signal-to-noise ratio); only the Karras and
log-SNR grids use it, and they invert it numerically, so no grid knows any SDE family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

NoiseLevel = Callable[[Tensor], Tensor]


def _check(t_start: float, t_end: float, steps: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not t_start > t_end:
        raise ValueError(f"a grid runs from t_start to a smaller t_end, got {t_start} -> {t_end}")


def _invert(level: NoiseLevel, target: Tensor, t_lo: float, t_hi: float) -> Tensor:
    """Solve level(t) = target for t in [t_lo, t_hi] by bisection (level increasing in t)."""
    lo = torch.full_like(target, t_lo)
    hi = torch.full_like(target, t_hi)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        above = level(mid) > target
        hi = torch.where(above, mid, hi)
        lo = torch.where(above, lo, mid)
    return 0.5 * (lo + hi)


def _finish(t: Tensor, t_start: float, t_end: float) -> Tensor:
    t = t.clone()
    t[0], t[-1] = t_start, t_end
    return t


@dataclass(frozen=True)
class UniformGrid:
    """t_i = t_start + i/N (t_end - t_start): the grid of Song et al. (2021)."""

    def __call__(
        self, t_start: float, t_end: float, steps: int, noise_level: NoiseLevel | None = None
    ) -> Tensor:
        _check(t_start, t_end, steps)
        return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)


@dataclass(frozen=True)
class QuadraticGrid:
    """t_i = t_end + (t_start - t_end)(1 - i/N)^2: denser near t_end (Song et al., 2021a, DDIM)."""

    def __call__(
        self, t_start: float, t_end: float, steps: int, noise_level: NoiseLevel | None = None
    ) -> Tensor:
        _check(t_start, t_end, steps)
        u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        return _finish(t_end + (t_start - t_end) * (1.0 - u) ** 2, t_start, t_end)


@dataclass(frozen=True)
class KarrasGrid:
    """Uniform in sigma^(1/rho) with sigma = noise_level(t): Karras et al. (2022), Eq. 5."""

    rho: float = 7.0

    def __post_init__(self) -> None:
        if not self.rho > 0:
            raise ValueError(f"rho must be > 0, got {self.rho}")

    def __call__(
        self, t_start: float, t_end: float, steps: int, noise_level: NoiseLevel | None = None
    ) -> Tensor:
        _check(t_start, t_end, steps)
        if noise_level is None:
            raise ValueError("KarrasGrid needs noise_level(t) = sigma(t)/alpha(t)")
        ends = noise_level(torch.tensor([t_start, t_end], dtype=torch.float64))
        s_max, s_min = ends[0] ** (1 / self.rho), ends[1] ** (1 / self.rho)
        u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        sigmas = (s_max + u * (s_min - s_max)) ** self.rho
        return _finish(_invert(noise_level, sigmas, t_end, t_start), t_start, t_end)


@dataclass(frozen=True)
class LogSNRGrid:
    """Uniform in the log-SNR lambda(t) = -log noise_level(t): Lu et al. (2022), DPM-Solver."""

    def __call__(
        self, t_start: float, t_end: float, steps: int, noise_level: NoiseLevel | None = None
    ) -> Tensor:
        _check(t_start, t_end, steps)
        if noise_level is None:
            raise ValueError("LogSNRGrid needs noise_level(t) = sigma(t)/alpha(t)")
        ends = noise_level(torch.tensor([t_start, t_end], dtype=torch.float64)).log()
        u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        levels = (ends[0] + u * (ends[1] - ends[0])).exp()
        return _finish(_invert(noise_level, levels, t_end, t_start), t_start, t_end)


def check_grid(grid: Tensor) -> None:
    """Refuse a grid that is not a strictly monotone 1-D tensor of at least two times."""
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(
            f"a time grid is a 1-D tensor of >= 2 times, got shape {tuple(grid.shape)}"
        )
    d = grid[1:] - grid[:-1]
    if not (bool((d < 0).all()) or bool((d > 0).all())):
        raise ValueError(
            "the time grid must be strictly monotone (all decreasing or all increasing)"
        )
    if not bool(torch.isfinite(grid).all()):
        raise ValueError("the time grid holds NaN or inf")
