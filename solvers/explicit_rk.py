"""Fixed-step explicit Runge–Kutta methods for the probability-flow ODE, driven by a Butcher tableau."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ._utils import batch_time
from .base import Solver
from .equation import Equation
from .noise import NoiseSource


@dataclass(frozen=True)
class ButcherTableau:
    """The coefficients of an explicit Runge–Kutta method with s stages.

    ``a[i]`` holds the i coefficients a_{i,0..i-1} of stage i (so ``a[0] == ()``),
    ``b`` the s weights and ``c`` the s nodes; Hairer, Nørsett & Wanner (1993), II.1, Eq. 1.8.
    """

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]

    def __post_init__(self) -> None:
        s = len(self.b)
        if s < 1 or len(self.a) != s or len(self.c) != s:
            raise ValueError(
                f"a Butcher tableau needs s >= 1 stages with len(a) == len(b) == len(c), "
                f"got {len(self.a)}, {len(self.b)}, {len(self.c)}"
            )
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(f"row {i} of an explicit tableau's a must have {i} entries")
            if not math.isclose(sum(row), self.c[i], abs_tol=1e-12):
                raise ValueError(f"row {i} of a must sum to c[{i}] = {self.c[i]}, got {sum(row)}")
        if not math.isclose(sum(self.b), 1.0, abs_tol=1e-12):
            raise ValueError(f"the weights b must sum to 1, got {sum(self.b)}")

    @property
    def stages(self) -> int:
        return len(self.b)


def rk_stages(
    tableau: ButcherTableau,
    equation: Equation,
    x: Tensor,
    t: Tensor | float,
    dt: Tensor | float,
    k0: Tensor | None = None,
) -> list[Tensor]:
    """Evaluate the stages k_i = f(x + dt sum_j a_ij k_j, t + c_i dt) of an explicit tableau.

    ``k0``, when given, is f(x, t) already known (first-same-as-last methods). ``t`` and ``dt``
    may be 0-dim tensors or Python floats; no value is read back to the host.
    """
    ks: list[Tensor] = []
    for i, (ci, row) in enumerate(zip(tableau.c, tableau.a, strict=True)):
        if i == 0 and k0 is not None:
            ks.append(k0)
            continue
        terms = [aij * kj for aij, kj in zip(row, ks, strict=True) if aij != 0.0]
        xi = x + dt * sum(terms[1:], terms[0]) if terms else x
        ks.append(equation.drift(xi, _time(t + ci * dt, x)))
    return ks


def combine(x: Tensor, dt: Tensor | float, weights: tuple[float, ...], ks: list[Tensor]) -> Tensor:
    """x + dt * sum_i weights_i k_i (zero weights skipped)."""
    terms = [w * k for w, k in zip(weights, ks, strict=True) if w != 0.0]
    return x + dt * sum(terms[1:], terms[0])


def _time(t: Tensor | float, x: Tensor) -> Tensor:
    if isinstance(t, Tensor):
        return batch_time(t, x)
    return x.new_full((x.shape[0],), t)


@dataclass(frozen=True)
class ExplicitRK(Solver):
    """x_{n+1} = x_n + dt sum_i b_i k_i with k_i = f(x_n + dt sum_{j<i} a_ij k_j, t_n + c_i dt).

    A generic explicit Runge–Kutta step (Hairer, Nørsett & Wanner, 1993, II.1, Def. 1.1) for
    the probability-flow ODE; subclasses set ``tableau`` and ``order``. One drift evaluation
    per stage; time runs in either direction (dt = t_next - t, negative when going back).
    """

    tableau: ClassVar[ButcherTableau | None] = None
    equation: ClassVar[str] = "ode"

    def __post_init__(self) -> None:
        if self.tableau is None:
            raise TypeError(
                f"{type(self).__name__} has no Butcher tableau; use Euler, Heun, RK4 "
                "or a subclass that sets the `tableau` class attribute"
            )

    def step(
        self,
        equation: Equation,
        x: Tensor,
        t: Tensor,
        t_next: Tensor,
        state: Any,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, Any]:
        dt = t_next - t
        ks = rk_stages(self.tableau, equation, x, t, dt)
        return combine(x, dt, self.tableau.b, ks), state


@dataclass(frozen=True)
class Euler(ExplicitRK):
    """x_{n+1} = x_n + dt f(x_n, t_n): global order 1, one evaluation per step (Euler, 1768)."""

    order: ClassVar[float] = 1.0
    tableau: ClassVar[ButcherTableau] = ButcherTableau(a=((),), b=(1.0,), c=(0.0,))


@dataclass(frozen=True)
class Heun(ExplicitRK):
    """Explicit trapezoidal rule: k1 = f(x, t), k2 = f(x + dt k1, t + dt), x + dt (k1 + k2)/2.

    Global order 2, two evaluations per step; Hairer, Nørsett & Wanner (1993), II.1, Eq. 1.9
    (the step of Karras et al., 2022, Algorithm 1, without their final Euler step).
    """

    order: ClassVar[float] = 2.0
    tableau: ClassVar[ButcherTableau] = ButcherTableau(a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0))


@dataclass(frozen=True)
class RK4(ExplicitRK):
    """The classical fourth-order Runge–Kutta method (Kutta, 1901).

    Global order 4, four evaluations per step; Hairer, Nørsett & Wanner (1993), II.1, Table 1.2.
    """

    order: ClassVar[float] = 4.0
    tableau: ClassVar[ButcherTableau] = ButcherTableau(
        a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
        c=(0.0, 0.5, 0.5, 1.0),
    )
