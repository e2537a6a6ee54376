"""Variance-preserving SDE (continuous DDPM)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._utils import append_dims
from .base import SDE, check_positive


class VPSDE(SDE):
    """dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW, beta(t) = beta_min + t (beta_max - beta_min).

    alpha(t) = exp(-1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min), sigma^2 = 1 - alpha^2.
    Song et al. (2021), Eq. 11 and 29.
    """

    def __init__(
        self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, eps: float = 1e-3
    ) -> None:
        self.beta_min = check_positive("beta_min", beta_min, allow_zero=True)
        self.beta_max = check_positive("beta_max", beta_max)
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min, got {beta_max} < {beta_min}")
        self.T = check_positive("T", T)
        self.eps = self.check_eps(eps)

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t: Tensor) -> Tensor:
        """log alpha(t) = -1/2 int_0^t beta(s) ds."""
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return -0.5 * append_dims(self.beta(t), x.ndim) * x

    def diffusion(self, t: Tensor) -> Tensor:
        return self.beta(t).sqrt()

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        log_alpha = self.log_alpha(t)
        return log_alpha.exp(), (-torch.expm1(2 * log_alpha)).sqrt()

    @property
    def prior_std(self) -> float:
        return 1.0
