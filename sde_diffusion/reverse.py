"""The reverse-time SDE and the probability-flow ODE of any forward SDE, written once."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from solvers.equation import Equation

from ._utils import append_dims
from .sde.base import SDE

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def reverse_sde(sde: SDE, score_fn: ScoreFn) -> Equation:
    """dx = [f(x, t) - g(t)^2 s(x, t)] dt + g(t) dW̄, run from T to 0.

    Anderson (1982); Song et al. (2021), Eq. 6.
    """

    def drift(x: Tensor, t: Tensor) -> Tensor:
        g2 = append_dims(sde.diffusion(t) ** 2, x.ndim)
        return sde.drift(x, t) - g2 * score_fn(x, t)

    return Equation(
        drift=drift,
        diffusion=sde.diffusion,
        score=score_fn,
        marginal=sde.marginal,
        forward_drift=sde.drift,
        forward_diffusion=sde.diffusion,
    )


def probability_flow_ode(sde: SDE, score_fn: ScoreFn) -> Equation:
    """dx = [f(x, t) - 1/2 g(t)^2 s(x, t)] dt: same marginals as the SDE, no noise.

    Song et al. (2021), Eq. 13.
    """

    def drift(x: Tensor, t: Tensor) -> Tensor:
        g2 = append_dims(sde.diffusion(t) ** 2, x.ndim)
        return sde.drift(x, t) - 0.5 * g2 * score_fn(x, t)

    return Equation(
        drift=drift,
        diffusion=None,
        score=score_fn,
        marginal=sde.marginal,
        forward_drift=sde.drift,
        forward_diffusion=sde.diffusion,
    )


def tweedie_denoise(sde: SDE, score_fn: ScoreFn, x: Tensor, t: Tensor) -> Tensor:
    """E[x_0 | x_t] = (x_t + sigma(t)^2 s(x_t, t)) / alpha(t) (Tweedie's formula; Efron, 2011).

    The score gets ``t`` in the dtype of ``x``; alpha, sigma and the sum are computed in at
    least float32 and cast back. In float16, sigma(eps)^2 underflows to 0 at the default eps
    of VE (1.7e-8) and sub-VP (1.2e-8), below float16's smallest number, 6e-8: a score that
    grows like 1/sigma then gave 0 * inf = NaN, and the exact score gave no denoising at all.
    """
    work = torch.promote_types(x.dtype, torch.float32)
    alpha, sigma = sde.marginal(t.to(work))
    s = score_fn(x, t.to(x.dtype)).to(work)
    x0 = (x.to(work) + append_dims(sigma**2, x.ndim) * s) / append_dims(alpha, x.ndim)
    return x0.to(x.dtype)
