"""Adaptive Dormand–Prince 5(4) for the probability-flow ODE, in torch on the input's device."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .base import Solver
from .equation import Equation
from .explicit_rk import ButcherTableau, combine, rk_stages
from .integrate import NonFiniteStateError
from .noise import NoiseSource

# Dormand & Prince (1980), Table 2: the six stages and the fifth-order weights b.
DOPRI5 = ButcherTableau(
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    ),
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0),
)
# The embedded fourth-order weights, which also use the FSAL stage k7 = f(x_{n+1}, t_{n+1}).
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
# Error weights e = b5 - b4 over the seven stages (b5 gives k7 the weight 0).
_E = tuple(b5 - b4 for b5, b4 in zip((*DOPRI5.b, 0.0), _B4, strict=True))
_ERROR_ORDER = 4  # order of the embedded estimator: step factor ~ err^(-1/5)


def _rms(v: Tensor) -> float:
    """Root mean square over every element of the batch (one host read)."""
    return float(v.square().mean().sqrt())


@dataclass(frozen=True)
class Dopri5(Solver):
    """Dormand–Prince 5(4) with local extrapolation, FSAL and an I-controller on the step size.

    x_{n+1} = x_n + h sum_i b_i k_i (order 5); the error h sum_i (b_i - b^_i) k_i of the embedded
    order-4 solution is measured in the RMS norm over the whole flattened batch of
    err / (atol + rtol max(|x_n|, |x_{n+1}|)) -- the norm of scipy's RK45 -- and a step is
    accepted when it is <= 1; the next step is h * clip(safety * norm^(-1/5), min_factor,
    max_factor), never growing right after a rejection. Initial step: Hairer, Nørsett & Wanner
    (1993), II.4 (p. 169). Dormand & Prince (1980), Table 2; HNW II.5, Table 5.2.

    The state stays on the input's device; one host read per attempted step decides acceptance.
    Costs 6 drift evaluations per attempted step, plus 2 at the start.
    """

    order: ClassVar[float] = 5.0
    adaptive: ClassVar[bool] = True
    equation: ClassVar[str] = "ode"

    rtol: float = 1e-5
    atol: float = 1e-5
    first_step: float | None = None
    max_steps: int = 100_000
    safety: float = 0.9
    min_factor: float = 0.2
    max_factor: float = 10.0

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 < v < 1):
                raise ValueError(f"{name} must be a number in (0, 1), got {v!r}")
        if self.first_step is not None and not (
            isinstance(self.first_step, (int, float)) and 0 < self.first_step < math.inf
        ):
            raise ValueError(
                f"first_step must be None or a finite number > 0, got {self.first_step!r}"
            )
        if not (isinstance(self.max_steps, int) and not isinstance(self.max_steps, bool)) or (
            self.max_steps < 1
        ):
            raise ValueError(f"max_steps must be an integer >= 1, got {self.max_steps!r}")
        if not 0 < self.safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {self.safety!r}")
        if not 0 < self.min_factor < 1:
            raise ValueError(f"min_factor must be in (0, 1), got {self.min_factor!r}")
        if not 1 < self.max_factor < math.inf:
            raise ValueError(f"max_factor must be a finite number > 1, got {self.max_factor!r}")

    def _scale(self, x: Tensor, x_new: Tensor | None = None) -> Tensor:
        big = x.abs() if x_new is None else torch.maximum(x.abs(), x_new.abs())
        return self.atol + self.rtol * big

    def _initial_step(
        self, equation: Equation, x: Tensor, f0: Tensor, t0: float, span: float, sign: float
    ) -> float:
        """Hairer, Nørsett & Wanner (1993), II.4, p. 169 (one extra drift evaluation)."""
        scale = self._scale(x)
        d0, d1 = _rms(x / scale), _rms(f0 / scale)
        if not math.isfinite(d1):
            raise NonFiniteStateError(f"the drift is NaN or inf at t={t0:.6g}")
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h0 = min(h0, span)
        x1 = x + (sign * h0) * f0
        f1 = equation.drift(x1, x.new_full((x.shape[0],), t0 + sign * h0))
        d2 = _rms((f1 - f0) / scale) / h0
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1 / (_ERROR_ORDER + 1))
        h = min(100 * h0, h1, span)
        return h if math.isfinite(h) else h0

    def solve(
        self,
        equation: Equation,
        x: Tensor,
        t_start: float,
        t_end: float,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, dict[str, int]]:
        t, t_end = float(t_start), float(t_end)
        if t == t_end:
            return x, {"steps": 0, "rejected": 0}
        if not bool(torch.isfinite(x).all()):
            raise NonFiniteStateError(f"the initial state at t={t:.6g} holds NaN or inf")
        sign = 1.0 if t_end > t else -1.0
        span = abs(t_end - t)
        f = equation.drift(x, x.new_full((x.shape[0],), t))
        if self.first_step is not None:
            h_abs = min(float(self.first_step), span)
        else:
            h_abs = self._initial_step(equation, x, f, t, span, sign)
        exponent = -1.0 / (_ERROR_ORDER + 1)
        steps = rejected = 0
        norm = 0.0
        while sign * (t_end - t) > 0:
            min_step = 10 * abs(math.nextafter(t, sign * math.inf) - t)
            rejected_here = False
            while True:
                if steps + rejected >= self.max_steps:
                    raise RuntimeError(
                        f"Dopri5 exceeded max_steps={self.max_steps} (accepted {steps}, rejected "
                        f"{rejected}) at t={t:.6g} on the way to t={t_end:.6g}; loosen rtol/atol "
                        "or raise max_steps"
                    )
                if h_abs < min_step:
                    where = f"Dopri5 step size underflow (h={h_abs:.3g}) at t={t:.6g}"
                    if not math.isfinite(norm):
                        raise NonFiniteStateError(f"{where}: the trial state became NaN or inf")
                    raise RuntimeError(f"{where}; the solution may blow up there")
                t_new = t + sign * h_abs
                if sign * (t_new - t_end) > 0:
                    t_new = t_end
                h = t_new - t
                h_abs = abs(h)
                ks = rk_stages(DOPRI5, equation, x, t, h, k0=f)
                x_new = combine(x, h, DOPRI5.b, ks)
                f_new = equation.drift(x_new, x.new_full((x.shape[0],), t_new))
                err = h * sum(e * k for e, k in zip(_E, [*ks, f_new], strict=True) if e != 0.0)
                norm = _rms(err / self._scale(x, x_new))
                if norm <= 1.0:
                    factor = self.max_factor if norm == 0 else self.safety * norm**exponent
                    factor = min(self.max_factor, factor)
                    if rejected_here:
                        factor = min(1.0, factor)
                    h_abs *= factor
                    break
                rejected += 1
                rejected_here = True
                # NaN compares false everywhere, so max() falls back to min_factor for it.
                h_abs *= max(self.min_factor, self.safety * norm**exponent)
            steps += 1
            t, x, f = t_new, x_new, f_new
        return x, {"steps": steps, "rejected": rejected}
