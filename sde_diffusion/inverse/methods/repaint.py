"""RePaint: replacement with resampling, jumping back ``jump`` steps ``resample`` times.

Lugmayr et al. (2022), Alg. 1 and Sec. 4.2: the time grid is walked in segments of ``jump``
steps; each segment is integrated with replacement (:mod:`.replacement`), then the state is
diffused forward again to the segment's start by the exact forward transition

    x_a = (alpha_a / alpha_b) x_b + sqrt(sigma_a^2 - (alpha_a / alpha_b)^2 sigma_b^2) z,

and the segment is integrated once more, ``resample`` times in all. This harmonises the
unobserved part with the observed one. NFE = resample x (the solver's NFE on the grid).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from solvers.grids import UniformGrid
from solvers.integrate import NonFiniteStateError, integrate
from solvers.noise import GeneratorNoise, NoiseSource

from ...reverse import probability_flow_ode, reverse_sde
from ...sampling.driver import SampleResult
from ..base import Operator
from ._common import ScoreFn, check_count, observation
from .base import InverseMethod
from .replacement import Replacement


def renoise(sde: Any, x: Tensor, t_from: Tensor, t_to: Tensor, noise: NoiseSource) -> Tensor:
    """A draw of x_{t_to} | x_{t_from} under the forward SDE (t_to > t_from), from the marginal."""
    work = torch.promote_types(x.dtype, torch.float32)
    ts = torch.stack([t_from, t_to]).to(device=x.device, dtype=work)
    alpha, sigma = sde.marginal(ts)
    ratio = alpha[1] / alpha[0]
    var = (sigma[1] ** 2 - ratio**2 * sigma[0] ** 2).clamp_min(0)
    return (ratio * x + var.sqrt() * noise.normal(x)).to(x.dtype)


class RePaint(InverseMethod):
    """RePaint resampling (module docstring) around replacement, with any fixed-step solver.

    Args:
        jump: steps per segment (the jump length j of Lugmayr et al.), >= 1.
        resample: integrations of each segment (the resample count r), >= 1; 1 is replacement.
    """

    supports = "fixed"

    def __init__(self, jump: int = 10, resample: int = 5) -> None:
        self.jump = check_count("RePaint jump", jump)
        self.resample = check_count("RePaint resample", resample)

    def sample(
        self,
        sde: Any,
        score_fn: ScoreFn,
        op: Operator,
        y: Tensor,
        shape: Sequence[int],
        *,
        solver: Any = None,
        steps: int | None = None,
        eps: float | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        progress: bool = False,
    ) -> SampleResult:
        if solver is None:
            raise ValueError("RePaint wraps a solver: give a fixed-step solver")
        steps = check_count("steps", steps)
        eps = sde.eps if eps is None else sde.check_eps(eps)
        y = observation(op, y, shape[1:], shape[0])
        wrapped = Replacement().wrap(solver, op, y, shape[1:])
        build = probability_flow_ode if solver.equation == "ode" else reverse_sde
        equation = build(sde, score_fn)
        grid = (getattr(solver, "grid", None) or UniformGrid())(
            sde.T, eps, steps, noise_level=sde.noise_level
        )
        noise = GeneratorNoise(generator)
        x = sde.prior_sample(tuple(shape), generator=generator, device=device, dtype=dtype)
        starts = list(range(0, steps, self.jump))
        nfe = 0
        bad = torch.zeros((), dtype=torch.bool, device=x.device)
        with torch.no_grad():
            for a in tqdm(starts, disable=not progress, desc="RePaint", leave=False):
                seg = grid[a : min(a + self.jump, steps) + 1]
                for k in range(self.resample):
                    if k:
                        x = renoise(sde, x, seg[-1], seg[0], noise)
                    sol = integrate(wrapped, equation, x, seg, noise=noise, check_finite=False)
                    x, nfe = sol.x, nfe + sol.nfe
                    bad = bad | ~torch.isfinite(x).all()
        if bool(bad):  # the single host read
            raise NonFiniteStateError("RePaint: the state became NaN or inf")
        return SampleResult(x=x, nfe=nfe, steps=steps * self.resample)

    def __repr__(self) -> str:
        return f"RePaint(jump={self.jump}, resample={self.resample})"


__all__ = ["RePaint", "renoise"]
