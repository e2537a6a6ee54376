"""Noise sources: where stochastic solvers get their Gaussian draws.

A solver never calls ``torch.randn`` itself. It asks the noise source for a Brownian
increment over ``[t, t_next]`` or for a standard normal draw, so that seeded runs are
reproducible and convergence tests can share one Brownian path across step sizes.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor


class NoiseSource(Protocol):
    def increment(self, t: Tensor, t_next: Tensor, like: Tensor) -> Tensor:
        """W(t_next) - W(t), shaped like ``like``, with variance |t_next - t|."""
        ...

    def normal(self, like: Tensor) -> Tensor:
        """A fresh standard normal draw shaped like ``like`` (e.g. for Langevin steps)."""
        ...


class GeneratorNoise:
    """Independent Gaussian draws from a ``torch.Generator`` (or the global RNG).

    Draws are made per sample row in a fixed order, so with a seeded generator a run
    is reproducible on a given device.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def normal(self, like: Tensor) -> Tensor:
        return torch.randn(
            like.shape, generator=self.generator, device=like.device, dtype=like.dtype
        )

    def increment(self, t: Tensor, t_next: Tensor, like: Tensor) -> Tensor:
        return self.normal(like) * (t_next - t).abs().sqrt()


class BrownianNoise:
    """One fixed Brownian path, queried at any times (via ``torchsde.BrownianInterval``).

    Increments over the same interval are the same whatever the step size, so solvers run
    with different grids see one path: this is what strong-convergence tests need.
    ``normal`` draws come from a separate seeded generator.
    """

    def __init__(self, t0: float, t1: float, like: Tensor, seed: int = 0, tol: float = 1e-9):
        import torchsde

        lo, hi = min(t0, t1), max(t0, t1)
        self._lo, self._hi = lo, hi
        self._shape = like.shape
        self._bm = torchsde.BrownianInterval(
            t0=lo,
            t1=hi,
            size=(like.shape[0], math.prod(like.shape[1:])),
            dtype=like.dtype,
            device=like.device,
            entropy=seed,
            tol=tol,
            levy_area_approximation="none",
        )
        self._gen = torch.Generator(device=like.device).manual_seed(seed + 1)

    def increment(self, t: Tensor, t_next: Tensor, like: Tensor) -> Tensor:
        a, b = float(t), float(t_next)  # adaptive queries of a test path: host values are fine
        lo, hi = (a, b) if a <= b else (b, a)
        dw = self._bm(max(lo, self._lo), min(hi, self._hi)).reshape(like.shape)
        return dw if b >= a else -dw

    def normal(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self._gen, device=like.device, dtype=like.dtype)
