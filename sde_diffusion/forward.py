"""Simulating the forward SDE: noising data by Euler–Maruyama in forward time."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from torch import Tensor

from .sde.base import SDE


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def simulate_forward(
    sde: SDE,
    x0: Tensor,
    steps: int,
    *,
    t_end: float | None = None,
    generator: torch.Generator | None = None,
    save_every: int = 1,
) -> tuple[Tensor, Tensor]:
    """Paths of dx = f(x, t) dt + g(t) dW from x(0) = x0 to t_end by Euler–Maruyama.

    x_{n+1} = x_n + f(x_n, t_n) h + g(t_n) sqrt(h) z_n on the uniform grid t_n = n h,
    h = t_end / steps, z_n ~ N(0, I) (Kloeden & Platen, 1992, Sec. 9.1; the forward SDE of
    Song et al., 2021, Eq. 5). Weak order 1; strong order 1 here, as g does not depend on x.
    The law of x_t is then close to the closed-form marginal N(alpha(t) x0, sigma(t)^2 I).

    Args:
        sde: the forward SDE (its ``drift`` and ``diffusion``).
        x0: the data at t = 0, shape ``(B, *event_shape)``; the paths have its device and dtype.
        steps: the number of Euler–Maruyama steps, an integer >= 1.
        t_end: the final time, in (0, T]; default ``sde.T``.
        generator: seeds the Gaussian increments (a generator on x0's device).
        save_every: keep the state every ``save_every`` steps (and always the last one).

    Returns:
        ``(times, paths)``: ``times`` of shape ``(K,)`` from 0 to t_end and ``paths`` of shape
        ``(K, *x0.shape)`` with ``paths[k]`` the state at ``times[k]``; ``paths[0]`` is x0.
    """
    steps = _check_int("steps", steps)
    save_every = _check_int("save_every", save_every)
    if not isinstance(x0, Tensor) or x0.ndim < 1 or not x0.is_floating_point():
        raise ValueError("x0 must be a floating-point tensor of shape (B, *event_shape)")
    if t_end is None:
        t_end = sde.T
    if isinstance(t_end, bool) or not isinstance(t_end, Real) or not math.isfinite(t_end):
        raise ValueError(f"t_end must be a number in (0, T] = (0, {sde.T}], got {t_end!r}")
    if not 0 < t_end <= sde.T:
        raise ValueError(f"t_end must lie in (0, T] = (0, {sde.T}], got {t_end}")
    # the grid is made on the device (no host-to-device copy); the loop then makes no host sync
    times = torch.linspace(0.0, float(t_end), steps + 1, device=x0.device, dtype=x0.dtype)
    h = torch.diff(times)
    sqrt_h = h.sqrt()
    batch, shape = x0.shape[0], (x0.ndim - 1) * (1,)
    x, saved = x0, [x0]
    for n in range(steps):
        t = times[n].expand(batch)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        g = sde.diffusion(t).reshape(batch, *shape)
        x = x + sde.drift(x, t) * h[n] + g * sqrt_h[n] * z
        if (n + 1) % save_every == 0 or n + 1 == steps:
            saved.append(x)
    kept = times[::save_every]
    if steps % save_every:
        kept = torch.cat([kept, times[-1:]])
    return kept, torch.stack(saved)
