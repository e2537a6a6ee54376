"""UniPC: a multistep exponential predictor with a corrector that costs no extra evaluation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ._exponential import data_prediction, step_ends
from .base import Solver
from .dpm_solver_pp import (
    MultistepState,
    check_multistep,
    current_order,
    exponential_update,
    init_multistep,
)
from .equation import Equation
from .grids import LogSNRGrid
from .noise import NoiseSource


class _UniPCOrder:
    """``order`` (global) = predictor order + 1 on an instance; that of the default on the class."""

    def __get__(self, obj: UniPC | None, cls: type | None = None) -> float:
        return float((obj.predictor_order if obj is not None else 2) + 1)


@dataclass(frozen=True)
class UniPC(Solver):
    """UniPC-p (Zhao et al., 2023, NeurIPS): UniP-p predictor + UniC corrector, 1 NFE per step.

    Data prediction x0_hat = (x + sigma^2 s)/alpha, lambda = log(alpha/sigma). A step from s
    (state x_s, already corrected) to t:

    - UniP-p, predictor (their Eq. 6 / Algorithm 1): the DPM-Solver++ update through the
      last p data predictions, x~_t = sigma_t/sigma_s x_s + alpha_t int_0^h e^(u-h) P_p(u) du;
    - evaluate x0_t = x0_hat(x~_t, t): the one evaluation, used by the next step too;
    - UniC, corrector (their Eq. 8 / Algorithm 2): the same update again, its polynomial now
      also through (lambda_t, x0_t): x^c_t = sigma_t/sigma_s x_s + alpha_t int e^(u-h) P_{p+1}.

    The corrector's evaluation would be the next step's anyway, so it costs nothing: the
    driver holds the prediction x~_t, and the next step evaluates there, corrects it to x^c_t,
    and continues from x^c_t (the model output stays the one at x~_t; its error is of
    higher order). The final step is not corrected. The corrector raises the global order
    from p to p + 1 (their Theorem 3.1): ``order`` is p + 1. Interpolants are integrated
    exactly; for two nodes, ``variant`` "bh1" (B(h) = h) or "bh2" (B(h) = 1 - e^-h) use
    UniPC's truncated coefficient instead (see :func:`solvers.dpm_solver_pp.exponential_update`).

    The predictor's order follows the history (1, 2, ...), with ``lower_order_final`` the
    steps left, and ``max_step_ratio`` guards against long extrapolation, all as in
    :class:`solvers.dpm_solver_pp.DPMSolverPP`. A grid of fewer steps than the predictor
    order is refused with a ValueError in ``init``.

    Args:
        predictor_order: p, 1 to 3 (global order p + 1).
        lower_order_final: drop the order at the final steps.
        variant: "exact", "bh1" or "bh2" (default; measured best of the three at 10 NFE).
        max_step_ratio: >= 1 (inf: never fall back).
        grid: the default time grid for :func:`sde_diffusion.sample`.
    """

    order: ClassVar[float] = _UniPCOrder()  # type: ignore[assignment]
    equation: ClassVar[str] = "ode"
    requires: ClassVar[tuple[str, ...]] = ("score", "marginal")
    nfe_per_step: ClassVar[int] = 1

    predictor_order: int = 2
    lower_order_final: bool = True
    variant: str = "bh2"
    max_step_ratio: float = 2.0
    grid: Callable[..., Tensor] | None = LogSNRGrid()

    def __post_init__(self) -> None:
        check_multistep(
            type(self).__name__, self.predictor_order, (1, 2, 3), self.variant,
            self.max_step_ratio,
        )  # fmt: skip

    def init(self, equation: Equation, x: Tensor, grid: Tensor) -> MultistepState:
        return init_multistep(type(self).__name__, self.predictor_order, grid)

    def step(
        self,
        equation: Equation,
        x: Tensor,
        t: Tensor,
        t_next: Tensor,
        state: MultistepState,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, Any]:
        alpha_s, sigma_s, alpha_t, sigma_t, lam_s, lam_t = step_ends(equation, t, t_next)
        x0_s = data_prediction(equation, x, t, alpha_s, sigma_s)
        if state.base is not None:  # UniC: correct the previous prediction with x0_s
            n = state.base_nodes
            lams = (state.lams[0], lam_s, *state.lams[1:n])
            outputs = (state.outputs[0], x0_s, *state.outputs[1:n])
            x = exponential_update(
                state.base, state.base_lam, state.base_sigma, lam_s, alpha_s, sigma_s,
                lams, outputs, self.variant,
            )  # fmt: skip
        p = self.predictor_order
        k = current_order(p, state, self.lower_order_final)
        lams = (lam_s, *state.lams)[:p]
        outputs = (x0_s, *state.outputs)[:p]
        x_next = exponential_update(
            x, lam_s, sigma_s, lam_t, alpha_t, sigma_t, lams[:k], outputs[:k],
            self.variant, self.max_step_ratio,
        )  # fmt: skip
        new = MultistepState(
            steps=state.steps,
            index=state.index + 1,
            lams=lams,
            outputs=outputs,
            base=x,
            base_lam=lam_s,
            base_sigma=sigma_s,
            base_nodes=k,
        )
        return x_next, new
