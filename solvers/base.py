"""The solver interface: hyperparameters in a frozen dataclass, one ``step`` method.

Subclasses are frozen dataclasses and declare their capabilities as class attributes:

- ``order``: the order of convergence they claim (strong order for SDE solvers with
  noise, order of the global error for ODE solvers);
- ``stochastic``: whether they draw noise;
- ``adaptive``: whether they choose their own steps (then they implement ``solve``);
- ``equation``: ``"sde"`` for the reverse-time SDE, ``"ode"`` for the probability-flow ODE;
- ``requires``: the optional fields of :class:`~solvers.equation.Equation` they use.

State passes in and out of ``step`` and is never kept on ``self``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from .equation import Equation
from .noise import NoiseSource


class Solver:
    order: ClassVar[float] = 1.0
    stochastic: ClassVar[bool] = False
    adaptive: ClassVar[bool] = False
    equation: ClassVar[str] = "ode"
    requires: ClassVar[tuple[str, ...]] = ()

    def check(self, equation: Equation) -> None:
        """Refuse an equation this solver cannot integrate (raised before any step)."""
        name = type(self).__name__
        if self.equation == "sde" and not equation.stochastic:
            raise ValueError(
                f"{name} integrates a reverse-time SDE but was given an ODE "
                "(no diffusion term); use an ODE solver for the probability-flow ODE"
            )
        if self.equation == "ode" and equation.stochastic:
            raise ValueError(
                f"{name} integrates an ODE but was given an SDE; build the probability-flow ODE"
            )
        missing = [r for r in self.requires if getattr(equation, r) is None]
        if missing:
            raise ValueError(f"{name} needs the equation's {', '.join(missing)}, which is not set")

    def grid_solver(self) -> Solver:
        """The deterministic fixed-step solver whose steps follow this solver's grid: the one
        grid tuning (``tune_grid``, ``auto_grid``) runs. Default: the solver itself; a solver
        that wraps another on its main path (``Restart``) returns that one."""
        return self

    def init(self, equation: Equation, x: Tensor, grid: Tensor) -> Any:
        """The state carried between steps (for multistep methods). Default: none."""
        return None

    def step(
        self,
        equation: Equation,
        x: Tensor,
        t: Tensor,
        t_next: Tensor,
        state: Any,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, Any]:
        """Advance ``x`` from time ``t`` to ``t_next`` (0-dim tensors; either direction)."""
        raise NotImplementedError

    def solve(
        self,
        equation: Equation,
        x: Tensor,
        t_start: float,
        t_end: float,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, dict[str, int]]:
        """Adaptive solvers: integrate from t_start to t_end; return x and step statistics."""
        raise NotImplementedError
