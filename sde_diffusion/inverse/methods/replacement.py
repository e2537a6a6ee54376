"""Replacement (imputation): after every solver step, overwrite what y observes by noised y.

Song et al. (2021), App. I.2 (the reference code's inpainting): the observed pixels of x_t are
replaced by alpha_t y + sigma_t z. Generalised to any operator through its SVD (Kawar et al.,
2022, Eq. 4): coordinate i of V^T x is observed as c_i = (U^T y)_i / s_i with noise level
nu_i = sigma_y / s_i, so while the noise level sigma_t / alpha_t >= nu_i it is set to

    (V^T x_t)_i = alpha_t c_i + sqrt(sigma_t^2 - alpha_t^2 nu_i^2) z_i,

a draw of the forward-noised observation's law; below that level it is left to the solver.
For a mask and sigma_y = 0 this is exactly the reference's replacement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from solvers.base import Solver
from solvers.equation import Equation
from solvers.noise import NoiseSource

from ...sampling.driver import SampleResult, sample
from ..base import Operator
from ._common import ScoreFn, Spectral, like, observation, spectral
from .base import InverseMethod


class ReplacementSolver(Solver):
    """A fixed-step solver whose every step is followed by the replacement projection.

    It mirrors the wrapped solver's ``equation``, ``requires``, ``order`` and ``grid``; it is
    stochastic (the projection draws noise) and refuses adaptive solvers, which own their
    steps. State passes through unchanged (multistep histories keep their model outputs).
    """

    adaptive = False
    stochastic = True

    def __init__(self, inner: Solver, spec: Spectral) -> None:
        if not isinstance(inner, Solver):
            raise ValueError(f"solver must be a solvers.Solver, got {type(inner).__name__}")
        if inner.adaptive:
            raise ValueError(
                f"{type(inner).__name__} is adaptive: replacement needs a fixed-step solver "
                "(it changes the state between steps)"
            )
        self.inner, self.spec = inner, spec
        self.equation, self.requires, self.order = inner.equation, inner.requires, inner.order
        if getattr(inner, "grid", None) is not None:
            self.grid = inner.grid

    def init(self, equation: Equation, x: Tensor, grid: Tensor) -> Any:
        return self.inner.init(equation, x, grid)

    def step(
        self,
        equation: Equation,
        x: Tensor,
        t: Tensor,
        t_next: Tensor,
        state: Any,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, Any]:
        x, state = self.inner.step(equation, x, t, t_next, state, noise)
        return project(self.spec, equation.marginal, x, t_next, noise), state

    def __repr__(self) -> str:
        return f"ReplacementSolver({self.inner!r})"


def project(spec: Spectral, marginal: Any, x: Tensor, t: Tensor, noise: NoiseSource) -> Tensor:
    """Set (V^T x)_i = alpha_t c_i + sqrt(sigma_t^2 - alpha_t^2 nu_i^2) z_i where that is >= 0."""
    work = torch.promote_types(x.dtype, torch.float32)
    alpha, sigma = marginal(torch.as_tensor(t, device=x.device, dtype=work).reshape(1))
    z = spec.Vt(x)
    r = spec.rank
    nu2 = like(spec.nu, z) ** 2
    var = sigma.to(z.dtype) ** 2 - alpha.to(z.dtype) ** 2 * nu2  # (r,)
    fresh = alpha.to(z.dtype) * like(spec.c, z) + var.clamp_min(0).sqrt() * noise.normal(z[:, :r])
    z = torch.cat([torch.where(var >= 0, fresh, z[:, :r]), z[:, r:]], dim=1)
    return spec.V(z)


class Replacement(InverseMethod):
    """Replacement / imputation with any fixed-step solver (module docstring for the equation)."""

    supports = "fixed"

    def wrap(self, solver: Solver, op: Operator, y: Tensor, event_shape: Sequence[int]) -> Solver:
        """The solver with the projection after each step; ``y`` from :func:`observation`."""
        return ReplacementSolver(solver, spectral(op, y, event_shape))

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
            raise ValueError("Replacement wraps a solver: give a fixed-step solver")
        y = observation(op, y, shape[1:], shape[0])
        wrapped = self.wrap(solver, op, y, shape[1:])
        return sample(
            sde,
            score_fn,
            wrapped,
            shape,
            steps=steps,
            eps=eps,
            generator=generator,
            device=device,
            dtype=dtype,
            progress=progress,
        )

    def __repr__(self) -> str:
        return "Replacement()"
