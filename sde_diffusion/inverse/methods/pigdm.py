"""Pseudoinverse-guided diffusion (PiGDM) as a score transform, through the operator's SVD."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..base import Operator
from ._common import ScoreFn, batch_times, check_number, like, spectral, tweedie
from .base import ScoreTransform


class PiGDM(ScoreTransform):
    """grad log p_t(y | x) ~ [(y - A x0_hat)^T (r_t^2 A A^T + sigma_y^2 I)^-1 A dx0_hat/dx]^T.

    Song et al. (2023), Eqs. 7-8: p(x_0 | x_t) ~ N(x0_hat, r_t^2 I) with Tweedie's x0_hat, so
    p(y | x_t) ~ N(A x0_hat, r_t^2 A A^T + sigma_y^2 I); r_t^2 = c nu^2 / (c + nu^2), the
    posterior variance of x_0 ~ N(0, c I) at noise level nu = sigma_t / alpha_t. Through the
    SVD A = U diag(s) V^T the inverse is diagonal: the vector is V_r diag(s / (r_t^2 s^2 +
    sigma_y^2)) (U^T y - diag(s) V_r^T x0_hat), pulled back by autograd through x0_hat. Works
    for noiseless operators (r_t > 0). One score evaluation plus one vector-Jacobian product.

    Args:
        scale: the guidance weight (1: as written), > 0.
        prior_var: c, the data variance assumed by r_t (1 for data scaled to unit variance).
    """

    def __init__(self, scale: float = 1.0, prior_var: float = 1.0) -> None:
        self.scale = check_number("PiGDM scale", scale, 0.0, above=True)
        self.prior_var = check_number("PiGDM prior_var", prior_var, 0.0, above=True)

    def posterior_score(
        self, sde: Any, score_fn: ScoreFn, op: Operator, y: Tensor, event_shape: Sequence[int]
    ) -> ScoreFn:
        spec = spectral(op, y, event_shape)
        r = spec.rank
        sy2 = op.sigma_y**2
        c0 = self.prior_var

        def score(x: Tensor, t: Tensor) -> Tensor:
            alpha, sigma = sde.marginal(batch_times(t, x))
            nu2 = (sigma / alpha) ** 2
            r2 = (c0 * nu2 / (c0 + nu2))[:, None]  # (B, 1)
            s_, c = like(spec.s, x), like(spec.c, x)
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                s = score_fn(xg, t)
                x0 = tweedie(sde, s, xg, t)
                resid = s_ * (c - spec.Vt(x0)[:, :r])  # U^T y - diag(s) V_r^T x0_hat
                vec = torch.zeros(x.shape[0], x[0].numel(), device=x.device, dtype=x.dtype)
                vec[:, :r] = s_ * resid / (r2 * s_**2 + sy2)
                (grad,) = torch.autograd.grad(x0, xg, spec.V(vec.detach()))
            return s.detach() + self.scale * grad.detach()

        return score

    def __repr__(self) -> str:
        return f"PiGDM(scale={self.scale}, prior_var={self.prior_var})"
