"""Sub-variance-preserving SDE."""

from __future__ import annotations

import torch
from torch import Tensor

from .vp import VPSDE


class SubVPSDE(VPSDE):
    """dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 int_0^t beta))) dW.

    Same drift and alpha(t) as the VP SDE; sigma(t) = 1 - alpha(t)^2, below the VP one.
    Song et al. (2021), Eq. 17 and 30.
    """

    def diffusion(self, t: Tensor) -> Tensor:
        return (self.beta(t) * -torch.expm1(4 * self.log_alpha(t))).sqrt()

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        log_alpha = self.log_alpha(t)
        return log_alpha.exp(), -torch.expm1(2 * log_alpha)
