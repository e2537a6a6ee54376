"""Time grids: decreasing tensors ``t_0 = t_start > ... > t_N = t_end``.

Each grid is a small frozen dataclass called as ``grid(t_start, t_end, steps,
noise_level=...)``. ``noise_level(t)`` is the forward process's sigma(t)/alpha(t) (the
EDM noise level, whose inverse is the signal-to-noise ratio); only the Karras and
log-SNR grids use it, and they invert it numerically, so no grid knows any SDE family.
"""

from __future__ import annotations

import math
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
    """t_i = (sqrt(t_start) + i/N (sqrt(t_end) - sqrt(t_start)))^2: uniform in sqrt(t).

    The official DPM-Solver code's ``time_quadratic`` grid (Lu et al., 2022), denser near
    t_end. (Until this version it was t_end + (t_start - t_end)(1 - i/N)^2, up to 0.015 apart.)
    """

    def __call__(
        self, t_start: float, t_end: float, steps: int, noise_level: NoiseLevel | None = None
    ) -> Tensor:
        _check(t_start, t_end, steps)
        u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        root = math.sqrt(t_start) + u * (math.sqrt(t_end) - math.sqrt(t_start))
        return _finish(root**2, t_start, t_end)


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
    """Uniform in the log-SNR lambda(t) = -log noise_level(t): Lu et al. (2022), DPM-Solver.

    Optional ``level_max`` and ``level_min`` clip the uniform part to noise levels in
    [level_min, level_max], as EDM's sigma_max and sigma_min bound its schedule (Karras et al.,
    2022, Sec. 3 and Table 1): an end beyond a clip is reached in one step, so no steps go
    where the noise hides the data's structure or where the data are already resolved.
    If the steps cannot cover the clipped ends plus one uniform step, the clips are ignored.
    With ``outer`` > 0 a clipped end gets max(1, round(steps * outer * its lambda-length /
    (core length + outer * clipped lengths))) log-uniform steps instead of one: steps ``outer``
    times as dense there, so the grid refines everywhere as the step count grows.
    """

    level_min: float | None = None
    level_max: float | None = None
    outer: float = 0.0

    def __post_init__(self) -> None:
        for name in ("level_min", "level_max"):
            v = getattr(self, name)
            if v is not None and not (
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf
            ):
                raise ValueError(f"{name} must be None or a finite number > 0, got {v!r}")
        if isinstance(self.outer, bool) or not isinstance(self.outer, (int, float)):
            raise ValueError(f"outer must be a number in [0, 1], got {self.outer!r}")
        if not 0 <= self.outer <= 1:
            raise ValueError(f"outer must be a number in [0, 1], got {self.outer!r}")
        if self.level_min is not None and self.level_max is not None:
            if not self.level_min < self.level_max:
                raise ValueError(
                    f"level_min must be < level_max, got {self.level_min} >= {self.level_max}"
                )

    def __call__(
        self, t_start: float, t_end: float, steps: int, noise_level: NoiseLevel | None = None
    ) -> Tensor:
        _check(t_start, t_end, steps)
        if noise_level is None:
            raise ValueError("LogSNRGrid needs noise_level(t) = sigma(t)/alpha(t)")
        ends = noise_level(torch.tensor([t_start, t_end], dtype=torch.float64)).log()
        hi, lo = ends[0], ends[1]
        cut_hi = self.level_max is not None and math.log(self.level_max) < float(hi)
        cut_lo = self.level_min is not None and math.log(self.level_min) > float(lo)
        n = steps - cut_hi - cut_lo
        if cut_hi:
            hi = torch.tensor(math.log(self.level_max), dtype=torch.float64)
        if cut_lo:
            lo = torch.tensor(math.log(self.level_min), dtype=torch.float64)
        if n < 1 or not hi > lo:  # nothing left between the clips: the plain grid
            cut_hi = cut_lo = False
            n, hi, lo = steps, ends[0], ends[1]
        n_hi, n_lo = int(cut_hi), int(cut_lo)
        if self.outer > 0 and (cut_hi or cut_lo):
            l_hi, l_lo = float(ends[0] - hi), float(lo - ends[1])
            total = float(hi - lo) + self.outer * (l_hi + l_lo)
            n_hi = max(1, round(steps * self.outer * l_hi / total)) if cut_hi else 0
            n_lo = max(1, round(steps * self.outer * l_lo / total)) if cut_lo else 0
            while steps - n_hi - n_lo < 1:  # keep one core step: trim the longer clipped end
                n_hi, n_lo = (n_hi - 1, n_lo) if n_hi > max(n_lo, 1) else (n_hi, n_lo - 1)
            n = steps - n_hi - n_lo
        u = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
        log_levels = [hi + u * (lo - hi)]
        if n_hi:
            log_levels.insert(
                0, torch.linspace(float(ends[0]), float(hi), n_hi + 1, dtype=torch.float64)[:-1]
            )
        if n_lo:
            log_levels.append(
                torch.linspace(float(lo), float(ends[1]), n_lo + 1, dtype=torch.float64)[1:]
            )
        levels = torch.cat(log_levels).exp()
        return _finish(_invert(noise_level, levels, t_end, t_start), t_start, t_end)


@dataclass(frozen=True)
class TabulatedGrid:
    """A grid through given noise levels sigma_0 > ... > sigma_N (e.g. from a grid tuner).

    t_i = noise_level^-1(sigma_i); the first and last times are the call's t_start and t_end,
    so ``levels[0]`` and ``levels[-1]`` only anchor the profile. For another step count M the
    log-levels are interpolated linearly in i/N at j/M, as Sabour et al. (2024, "Align Your
    Steps", Sec. 3.3) do to reuse an optimised schedule. Every interior level must lie strictly
    between the noise levels of t_end and t_start.
    """

    levels: tuple[float, ...]

    def __post_init__(self) -> None:
        lv = tuple(self.levels)
        ok = len(lv) >= 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in lv
        )
        if not ok or any(a <= b for a, b in zip(lv[:-1], lv[1:], strict=True)):
            raise ValueError(
                "levels must be >= 2 finite positive noise levels, strictly decreasing, "
                f"got {self.levels!r}"
            )
        object.__setattr__(self, "levels", tuple(float(v) for v in lv))

    def __call__(
        self, t_start: float, t_end: float, steps: int, noise_level: NoiseLevel | None = None
    ) -> Tensor:
        _check(t_start, t_end, steps)
        if noise_level is None:
            raise ValueError("TabulatedGrid needs noise_level(t) = sigma(t)/alpha(t)")
        table = torch.tensor(self.levels, dtype=torch.float64).log()
        u = torch.linspace(0.0, 1.0, len(self.levels), dtype=torch.float64)
        v = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        j = torch.searchsorted(u, v, right=True).clamp(1, len(u) - 1)
        w = (v - u[j - 1]) / (u[j] - u[j - 1])
        inner = (table[j - 1] + w * (table[j] - table[j - 1]))[1:-1].exp()
        ends = noise_level(torch.tensor([t_start, t_end], dtype=torch.float64))
        if inner.numel() and not (float(inner.max()) < ends[0] and float(inner.min()) > ends[1]):
            raise ValueError(
                f"TabulatedGrid: interior levels [{float(inner.min()):.4g}, "
                f"{float(inner.max()):.4g}] must lie strictly inside the noise levels of t_end "
                f"and t_start ({float(ends[1]):.4g}, {float(ends[0]):.4g})"
            )
        t = torch.cat([torch.tensor([t_start], dtype=torch.float64),
                       _invert(noise_level, inner, t_end, t_start),
                       torch.tensor([t_end], dtype=torch.float64)])  # fmt: skip
        return t


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
