"""The probability-flow ODE through ``scipy.integrate.solve_ivp``: the score_sde reference recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from .base import Solver
from .equation import Equation
from .integrate import NonFiniteStateError
from .noise import NoiseSource

# Method -> (nominal order, drift evaluations per attempted step for the explicit RK pairs).
_METHODS: dict[str, tuple[float, int | None]] = {
    "RK45": (5.0, 6),
    "RK23": (3.0, 3),
    "DOP853": (8.0, 12),
    "LSODA": (1.0, None),
}


class _MethodOrder:
    """``order`` of the chosen method on an instance; that of the default RK45 on the class."""

    def __get__(self, obj: ScipyODE | None, cls: type | None = None) -> float:
        return _METHODS[obj.method if obj is not None else "RK45"][0]


@dataclass(frozen=True)
class ScipyODE(Solver):
    """Integrate dx/dt = f(x, t) with ``scipy.integrate.solve_ivp`` on the host, in float64.

    The whole batch is flattened into one float64 vector and integrated from t_start to
    t_end (either direction); each evaluation converts the vector back to the input's shape,
    device and dtype, calls the drift and returns float64 numpy. This is the black-box ODE
    sampler of Song et al. (2021), Sec. 4.3 / App. D.2 (score_sde's ``get_ode_sampler``),
    with scipy's RK45 (Dormand & Prince, 1980) by default; ``RK23`` is Bogacki & Shampine
    (1989), ``DOP853`` Hairer, Nørsett & Wanner (1993) II.10, ``LSODA`` Petzold (1983), whose
    Jacobian is estimated by finite differences of the drift. ``order``: 5, 3, 8, 1 (LSODA
    switches order; 1 is nominal).

    Statistics: accepted ``steps`` from the output times; for the explicit RK pairs ``rejected``
    follows from ``nfev`` (each attempt costs a fixed number of evaluations, 2 at the start);
    ``nfev`` and ``njev`` are scipy's counts.
    """

    order: ClassVar[float] = _MethodOrder()  # type: ignore[assignment]
    adaptive: ClassVar[bool] = True
    equation: ClassVar[str] = "ode"

    method: str = "RK45"
    rtol: float = 1e-5
    atol: float = 1e-5

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {sorted(_METHODS)}, got {self.method!r}")
        for name in ("rtol", "atol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 < v < 1):
                raise ValueError(f"{name} must be a number in (0, 1), got {v!r}")

    def solve(
        self,
        equation: Equation,
        x: Tensor,
        t_start: float,
        t_end: float,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, dict[str, int]]:
        from scipy.integrate import solve_ivp

        t_start, t_end = float(t_start), float(t_end)
        if t_start == t_end:
            return x, {"steps": 0, "rejected": 0, "nfev": 0, "njev": 0}
        shape, device, dtype = x.shape, x.device, x.dtype

        nonfinite: list[float] = []  # times at which the drift came back NaN or inf

        def fun(t: float, y: np.ndarray) -> np.ndarray:
            xt = torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)
            tt = torch.full((shape[0],), t, device=device, dtype=dtype)
            dy = equation.drift(xt, tt).detach().to("cpu", torch.float64).numpy().ravel()
            if not nonfinite and not np.isfinite(dy).all():
                nonfinite.append(t)
            return dy

        y0 = x.detach().to("cpu", torch.float64).numpy().ravel()
        sol = solve_ivp(
            fun, (t_start, t_end), y0, method=self.method, rtol=self.rtol, atol=self.atol
        )
        if sol.status != 0:
            if nonfinite:
                raise NonFiniteStateError(
                    f"scipy {self.method} failed: the drift became NaN or inf at "
                    f"t={nonfinite[0]:.6g} ({sol.message})"
                )
            raise RuntimeError(
                f"scipy {self.method} failed between t={t_start:.6g} and t={t_end:.6g} "
                f"(reached t={float(sol.t[-1]):.6g}): {sol.message}"
            )
        out = (
            torch.from_numpy(np.ascontiguousarray(sol.y[:, -1]))
            .reshape(shape)
            .to(device=device, dtype=dtype)
        )
        steps = len(sol.t) - 1
        per_step = _METHODS[self.method][1]
        rejected = max(0, (sol.nfev - 2) // per_step - steps) if per_step else 0
        return out, {"steps": steps, "rejected": rejected, "nfev": sol.nfev, "njev": sol.njev}
