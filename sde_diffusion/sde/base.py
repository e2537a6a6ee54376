"""The forward SDE interface: coefficients, Gaussian marginal, prior."""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor

from .._utils import sum_except_batch


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (ok and math.isfinite(value)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


class SDE(abc.ABC):
    """A forward SDE dx = f(x, t) dt + g(t) dW on [0, T] with a Gaussian transition.

    Subclasses give ``drift``, ``diffusion``, ``marginal`` and ``prior_std``; everything
    generic (reverse SDE, probability-flow ODE, exact mixture scores, Tweedie denoising,
    time grids) is written once in terms of these.
    """

    T: float = 1.0
    eps: float = 1e-3  #: default sampling cut-off

    @abc.abstractmethod
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t), with ``t`` of shape ``(B,)``."""

    @abc.abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """g(t), shaped like ``t``."""

    @abc.abstractmethod
    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha(t), sigma(t)) with x_t = alpha x_0 + sigma z, each shaped like ``t``."""

    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the isotropic Gaussian prior at ``T``."""

    def noise_level(self, t: Tensor) -> Tensor:
        """sigma(t) / alpha(t): the EDM noise level, exp(-log-SNR / 2)."""
        alpha, sigma = self.marginal(t)
        return sigma / alpha

    def prior_sample(
        self,
        shape: tuple[int, ...] | torch.Size,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw x_T ~ N(0, prior_std^2 I) of the given shape."""
        if len(shape) < 1 or any(int(s) < 1 for s in shape):
            raise ValueError(
                f"shape must be a non-empty tuple of positive sizes, got {tuple(shape)}"
            )
        if device is None and generator is not None:
            device = generator.device
        z = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
        return self.prior_std * z

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, prior_std^2 I), one value per sample (summed over non-batch dims)."""
        s2 = self.prior_std**2
        d = x[0].numel()
        return -0.5 * sum_except_batch(x**2) / s2 - 0.5 * d * math.log(2 * math.pi * s2)

    def check_eps(self, eps: float) -> float:
        eps = float(eps)
        if not 0 < eps < self.T:
            raise ValueError(f"eps must lie in (0, T) = (0, {self.T}), got {eps}")
        return eps

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"
