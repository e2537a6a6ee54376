"""Diffusion posterior sampling (DPS) as a score transform (Chung et al., 2023)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..base import Operator
from ._common import ScoreFn, check_number, like, tweedie
from .base import ScoreTransform


class DPS(ScoreTransform):
    """grad log p_t(x | y) ~ s(x, t) - scale * grad_x |y - A x0_hat(x, t)|^2 / (2 sigma^2).

    The likelihood p(y | x_t) is approximated by N(y; A x0_hat(x_t), sigma^2 I) at Tweedie's
    estimate x0_hat = (x + sigma_t^2 s(x, t)) / alpha_t, and differentiated by autograd through
    the score (Chung et al., 2023, Eq. 16 and Thm. 1; Alg. 1 with its step folded into
    ``scale``). One score evaluation plus one vector-Jacobian product per call.

    Args:
        scale: the guidance weight (1: the Gaussian approximation as written), > 0.
        sigma: the likelihood width; default the operator's ``sigma_y``, which must then be
            > 0 (a noiseless operator needs an explicit width).
    """

    def __init__(self, scale: float = 1.0, sigma: float | None = None) -> None:
        self.scale = check_number("DPS scale", scale, 0.0, above=True)
        self.sigma = None if sigma is None else check_number("DPS sigma", sigma, 0.0, above=True)

    def posterior_score(
        self, sde: Any, score_fn: ScoreFn, op: Operator, y: Tensor, event_shape: Sequence[int]
    ) -> ScoreFn:
        sigma = self.sigma if self.sigma is not None else op.sigma_y
        if sigma <= 0:
            raise ValueError(
                "DPS needs a likelihood width > 0: the operator is noiseless (sigma_y = 0), "
                "so give DPS(sigma=...)"
            )
        weight = self.scale / sigma**2

        def score(x: Tensor, t: Tensor) -> Tensor:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                s = score_fn(xg, t)
                resid = like(y, x) - op.A(tweedie(sde, s, xg, t))
                (grad,) = torch.autograd.grad(-0.5 * (resid**2).sum(), xg)  # J^T A^T resid
            return s.detach() + weight * grad.detach()

        return score

    def __repr__(self) -> str:
        return f"DPS(scale={self.scale}, sigma={self.sigma})"
