"""Variance-exploding SDE (continuous SMLD / NCSN)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import SDE, check_positive


class VESDE(SDE):
    """dx = sqrt(d[s(t)^2]/dt) dW with s(t) = sigma_min (sigma_max/sigma_min)^t.

    g(t) = s(t) sqrt(2 log(sigma_max/sigma_min)); alpha = 1. Song et al. (2021), Eq. 9 and 30.
    The marginal is the exact solution started from x_0, sigma(t)^2 = s(t)^2 - sigma_min^2;
    the reference code uses s(t) itself, as if the data carried sigma_min noise already.
    The prior is N(0, sigma(T)^2 I), sigma(T) ~ sigma_max.
    """

    def __init__(
        self, sigma_min: float = 0.01, sigma_max: float = 50.0, T: float = 1.0, eps: float = 1e-5
    ) -> None:
        self.sigma_min = check_positive("sigma_min", sigma_min)
        self.sigma_max = check_positive("sigma_max", sigma_max)
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"sigma_min must be < sigma_max, got {sigma_min} >= {sigma_max}")
        self.T = check_positive("T", T)
        self.eps = self.check_eps(eps)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def _s(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t / self.T * self._log_ratio)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def diffusion(self, t: Tensor) -> Tensor:
        return self._s(t) * math.sqrt(2 * self._log_ratio / self.T)

    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        var = self.sigma_min**2 * torch.expm1(2 * t / self.T * self._log_ratio)
        return torch.ones_like(t), var.sqrt()

    @property
    def prior_std(self) -> float:
        return math.sqrt(self.sigma_max**2 - self.sigma_min**2)

    def noise_level(self, t: Tensor) -> Tensor:
        return self.marginal(t)[1]
