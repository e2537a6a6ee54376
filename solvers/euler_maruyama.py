"""Euler–Maruyama for the reverse-time SDE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ._utils import append_dims, batch_time
from .base import Solver
from .equation import Equation
from .noise import NoiseSource


@dataclass(frozen=True)
class EulerMaruyama(Solver):
    """x_{n+1} = x_n + f(x_n, t_n) dt + g(t_n) dW_n, dW_n ~ N(0, |dt|).

    Strong order 1/2 in general, 1 for additive noise (g depends on t only, as here);
    Kloeden & Platen (1992), Eq. 9.1.1. One drift evaluation per step.
    """

    order: ClassVar[float] = 1.0
    stochastic: ClassVar[bool] = True
    equation: ClassVar[str] = "sde"

    def step(
        self,
        equation: Equation,
        x: Tensor,
        t: Tensor,
        t_next: Tensor,
        state: Any,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, Any]:
        tb = batch_time(t, x)
        dt = t_next - t
        g = append_dims(equation.diffusion(tb), x.ndim)
        return x + equation.drift(x, tb) * dt + g * noise.increment(t, t_next, x), state
