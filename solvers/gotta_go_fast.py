"""Adaptive "Gotta Go Fast" SDE solver: Euler–Maruyama and stochastic improved Euler, per sample."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ._utils import append_dims
from .base import Solver
from .equation import Equation
from .integrate import NonFiniteStateError
from .noise import NoiseSource

_NORMS = ("l2_scaled", "l2", "linf")


@dataclass(frozen=True)
class GottaGoFast(Solver):
    """Adaptive reverse-SDE sampler of Jolicoeur-Martineau et al. (2021), Algorithm 1.

    Per sample, with its own step h, time t and one draw z ~ N(0, I) shared by both stages,
    dW = sqrt(h) z, dt = -h (time runs backwards):

        K1 = f(x, t) dt + g(t) dW,       x' = x + K1                  (Euler–Maruyama)
        K2 = f(x', t + dt) dt + g(t + dt) dW,  x'' = x + (K1 + K2)/2  (stochastic improved
                                                                        Euler, Roberts 2012)
        E = ||(K2 - K1)/2 / delta||,  delta = max(atol, rtol max(|x'|, |x'_prev|))

    ``E`` is the per-sample norm (``"l2_scaled"``: the root mean square over the sample's
    elements, the paper's choice; ``"l2"`` or ``"linf"``). A sample accepts its step when
    E <= 1, keeping the extrapolated x'' (``extrapolate=True``, the paper's default; else x'),
    and whatever the outcome sets h <- min(t - t_end, safety h E^(-exponent)). x'_prev is the
    Euler–Maruyama proposal of the sample's last accepted step (``x`` at the start). Weak
    order 1 (the improved-Euler stage raises the deterministic order to 2).

    All samples are evaluated in one batched call per stage, so each iteration costs 2
    evaluations of the drift, on the samples still running; a sample that reaches ``t_end``
    is frozen there. The loop reads the acceptance on the host once per iteration.

    Statistics: ``steps`` and ``rejected`` are the largest per-sample counts of accepted and
    rejected steps; ``iterations`` the batched attempts (NFE = 2 x iterations);
    ``mean_steps``/``mean_rejected`` the per-sample means.

    Args:
        rtol, atol: the mixed tolerance, each in (0, 1). Paper's images in [-1, 1]:
            atol = 0.0078, rtol = 0.01–0.05.
        first_step: the initial step h_init > 0 (paper: 0.01).
        safety: theta in (0, 1]; exponent: r in (0, 1]; norm: ``"l2_scaled"``, ``"l2"`` or
            ``"linf"``; max_iterations: the bound on batched attempts.
    """

    order: ClassVar[float] = 1.0
    stochastic: ClassVar[bool] = True
    adaptive: ClassVar[bool] = True
    equation: ClassVar[str] = "sde"

    rtol: float = 0.05
    atol: float = 0.0078
    first_step: float = 0.01
    safety: float = 0.9
    exponent: float = 0.9
    norm: str = "l2_scaled"
    extrapolate: bool = True
    max_iterations: int = 100_000

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and 0 < v < 1):
                raise ValueError(f"{name} must be a number in (0, 1), got {v!r}")
        if not (isinstance(self.first_step, (int, float)) and 0 < self.first_step < math.inf):
            raise ValueError(f"first_step must be a finite number > 0, got {self.first_step!r}")
        if not (isinstance(self.safety, (int, float)) and 0 < self.safety <= 1):
            raise ValueError(f"safety must be in (0, 1], got {self.safety!r}")
        if not (isinstance(self.exponent, (int, float)) and 0 < self.exponent <= 1):
            raise ValueError(f"exponent must be in (0, 1], got {self.exponent!r}")
        if self.norm not in _NORMS:
            raise ValueError(f"norm must be one of {', '.join(_NORMS)}, got {self.norm!r}")
        if not isinstance(self.extrapolate, bool):
            raise ValueError(f"extrapolate must be True or False, got {self.extrapolate!r}")
        if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int):
            raise ValueError(f"max_iterations must be an integer >= 1, got {self.max_iterations!r}")
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be an integer >= 1, got {self.max_iterations!r}")

    def _error(self, e: Tensor) -> Tensor:
        """The per-sample norm of the scaled error e, shape (B,)."""
        flat = e.reshape(e.shape[0], -1)
        if self.norm == "l2_scaled":
            return flat.square().mean(dim=1).sqrt()
        if self.norm == "l2":
            return flat.square().sum(dim=1).sqrt()
        return flat.abs().amax(dim=1)

    def solve(
        self,
        equation: Equation,
        x: Tensor,
        t_start: float,
        t_end: float,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, dict[str, float]]:
        t_start, t_end = float(t_start), float(t_end)
        stats = {"steps": 0, "rejected": 0, "iterations": 0, "mean_steps": 0, "mean_rejected": 0}
        if t_start == t_end:
            return x, stats
        if noise is None:
            raise ValueError("GottaGoFast draws noise: pass a noise source")
        sign = 1.0 if t_end > t_start else -1.0
        span = abs(t_end - t_start)
        b = x.shape[0]
        x = x.clone()
        x_prev = x.clone()
        # remaining time |t_end - t| per sample: t = t_end - sign * remaining
        remaining = torch.full((b,), span, device=x.device, dtype=x.dtype)
        h = torch.full_like(remaining, min(float(self.first_step), span))
        accepted = torch.zeros(b, device=x.device, dtype=torch.long)
        rejected = torch.zeros_like(accepted)
        h_min = 1e-12 * max(1.0, abs(t_start), abs(t_end))
        iterations = 0
        while True:
            active = torch.nonzero(remaining > 0).flatten()
            if active.numel() == 0:  # one host read per iteration: adaptive solvers may sync
                break
            if iterations >= self.max_iterations:
                raise RuntimeError(
                    f"GottaGoFast exceeded max_iterations={self.max_iterations} with "
                    f"{active.numel()} samples short of t={t_end:.6g}; loosen rtol/atol"
                )
            iterations += 1
            xa, ha, ra = x[active], h[active], remaining[active]
            ta = t_end - sign * ra
            last = ha >= ra  # h <= remaining always; equality lands exactly on t_end
            ha = torch.where(last, ra, ha)
            t_new = torch.where(last, torch.full_like(ta, t_end), ta + sign * ha)
            dt = append_dims(t_new - ta, x.ndim)
            dw = append_dims(ha.sqrt(), x.ndim) * noise.normal(xa)
            k1 = equation.drift(xa, ta) * dt + append_dims(equation.diffusion(ta), x.ndim) * dw
            x1 = xa + k1
            k2 = (
                equation.drift(x1, t_new) * dt + append_dims(equation.diffusion(t_new), x.ndim) * dw
            )
            x2 = xa + 0.5 * (k1 + k2)
            # x' (Euler–Maruyama) and x'' (improved Euler): keep one, scale by the other
            x_new, x_check = (x2, x1) if self.extrapolate else (x1, x2)
            delta = torch.clamp_min(
                self.rtol * torch.maximum(x_check.abs(), x_prev[active].abs()), self.atol
            )
            err = self._error(0.5 * (k2 - k1) / delta)
            finite = torch.isfinite(err)
            ok = finite & (err <= 1.0)
            keep = append_dims(ok, x.ndim)
            x[active] = torch.where(keep, x_new, xa)
            x_prev[active] = torch.where(keep, x_check, x_prev[active])
            ra = torch.where(ok, torch.where(last, torch.zeros_like(ra), ra - ha), ra)
            remaining[active] = ra
            accepted[active] += ok.long()
            rejected[active] += (~ok).long()
            # h <- min(t - t_end, safety h E^-r); E = 0 allows the whole rest, NaN shrinks by 10
            factor = self.safety * err.clamp_min(1e-300).pow(-self.exponent)
            factor = torch.where(finite, factor, torch.full_like(factor, 0.1))
            h_next = torch.minimum(ha * factor, ra)
            h[active] = h_next
            small = (ra > 0) & (h_next < h_min)
            if bool(small.any()):
                i = int(active[torch.nonzero(small)[0, 0]])
                where = (
                    f"GottaGoFast step size underflow at t={t_end - sign * float(remaining[i]):.6g}"
                )
                if not bool(finite[small].all()):
                    raise NonFiniteStateError(f"{where}: the trial state became NaN or inf")
                raise RuntimeError(f"{where} (sample {i}); the solution may blow up there")
        stats.update(
            steps=int(accepted.max()),
            rejected=int(rejected.max()),
            iterations=iterations,
            mean_steps=float(accepted.double().mean()),
            mean_rejected=float(rejected.double().mean()),
        )
        return x, stats
