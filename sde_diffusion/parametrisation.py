"""The wrapper that owns the parametrisation: any network F(x, c) becomes a score s(x, t).

Only ``sde.marginal`` is used: x_t = alpha x_0 + sigma z, with the EDM noise level
sigma_e = sigma / alpha and the scaled state x / alpha (Karras et al., 2022, Sec. 4 and
Table 1, which writes VP and VE this way). For every parametrisation the network sees

    c_in x_t  with  c_in = 1 / sqrt(sigma^2 + alpha^2 sigma_data^2)   (unit variance input),
    c_noise = log(sigma_e) / 4                                         (EDM, Table 1),

and its output F is read as:

- ``"score"``: s = F / sigma, the score scaled by the noise level (Song & Ermon, 2020,
  Technique 3; NCSN++ ``scale_by_sigma``). The optimal F is sigma * grad log p_t = -E[z | x_t].
- ``"eps"``: s = -F / sigma, F predicts the noise z (Ho et al., 2020, Eq. 12; Song et al.,
  2021, App. C). The same function class as ``"score"`` with the opposite sign.
- ``"edm"``: the denoiser D = c_skip x/alpha + c_out F with c_skip = sigma_d^2/(sigma_e^2 +
  sigma_d^2), c_out = sigma_e sigma_d / sqrt(sigma_e^2 + sigma_d^2) (Karras et al., 2022,
  Eq. 7 and Table 1) predicts x_0; s = (alpha D - x) / sigma^2 (Tweedie).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._utils import append_dims

PARAMETRISATIONS = ("score", "eps", "edm")


def network_inputs(
    x: Tensor, alpha: Tensor, sigma: Tensor, sigma_data: float
) -> tuple[Tensor, Tensor]:
    """(c_in x, c_noise): c_in = 1 / sqrt(sigma^2 + alpha^2 sigma_data^2), c_noise =
    log(sigma / alpha) / 4 (Karras et al., 2022, Table 1); alpha, sigma of shape ``(B,)``."""
    c_in = torch.rsqrt(sigma**2 + (alpha * sigma_data) ** 2)
    return append_dims(c_in, x.ndim) * x, (sigma / alpha).log() / 4


def marginal_at(sde: object, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
    """(alpha, sigma, t) of ``sde.marginal`` at t, scalar or ``(B,)``, expanded to ``(B,)``."""
    t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    elif tuple(t.shape) != (x.shape[0],):
        raise ValueError(
            f"t must be a scalar or of shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}"
        )
    alpha, sigma = sde.marginal(t)
    return alpha, sigma, t


class ScoreModel(nn.Module):
    """s(x, t) = grad_x log p_t(x) from a network F(x, c), for any SDE with a Gaussian marginal.

    Args:
        net: a module mapping ``(x, c)`` with c of shape ``(B,)`` to a tensor shaped like x;
            a class-conditional one also takes labels, ``net(x, c, y)``.
        sde: anything with ``marginal(t) -> (alpha, sigma)``.
        parametrisation: "score", "eps" or "edm" (see the module docstring).
        sigma_data: standard deviation of the data, for c_in and the EDM coefficients (> 0).
    """

    def __init__(
        self, net: nn.Module, sde: object, parametrisation: str = "eps", sigma_data: float = 0.5
    ) -> None:
        super().__init__()
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(
                f"parametrisation must be one of {PARAMETRISATIONS}, got {parametrisation!r}"
            )
        if not (math.isfinite(sigma_data) and sigma_data > 0):
            raise ValueError(f"sigma_data must be finite and > 0, got {sigma_data!r}")
        if not callable(getattr(sde, "marginal", None)):
            raise ValueError(f"sde must have a marginal(t) -> (alpha, sigma), got {sde!r}")
        self.net = net
        self.sde = sde
        self.parametrisation = parametrisation
        self.sigma_data = float(sigma_data)

    def _coefficients(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return marginal_at(self.sde, x, t)

    def _net(self, x: Tensor, alpha: Tensor, sigma: Tensor, y: Tensor | None) -> Tensor:
        """F(c_in x, c_noise) or, with labels, F(c_in x, c_noise, y)."""
        x_in, c_noise = network_inputs(x, alpha, sigma, self.sigma_data)
        if y is None:  # networks without a label argument keep working
            return self.net(x_in, c_noise)
        return self.net(x_in, c_noise, y)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The score s(x, t) (or s(x, t | y) for labels ``y`` of shape ``(B,)``), shaped like
        x; ``t`` scalar or of shape ``(B,)``. For a class-conditional network ``y=None`` is
        the null label: the unconditional score."""
        alpha, sigma, _ = self._coefficients(x, t)
        F = self._net(x, alpha, sigma, y)
        a, s = append_dims(alpha, x.ndim), append_dims(sigma, x.ndim)
        if self.parametrisation == "score":
            return F / s
        if self.parametrisation == "eps":
            return -F / s
        return (a * self._edm_denoise(x, F, a, s) - x) / s**2

    def denoise(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """x0_hat = E[x_0 | x_t (, y)] = (x + sigma^2 s) / alpha (Tweedie; Efron, 2011)."""
        alpha, sigma, _ = self._coefficients(x, t)
        F = self._net(x, alpha, sigma, y)
        a, s = append_dims(alpha, x.ndim), append_dims(sigma, x.ndim)
        if self.parametrisation == "score":
            return (x + s * F) / a
        if self.parametrisation == "eps":
            return (x - s * F) / a
        return self._edm_denoise(x, F, a, s)

    def _edm_denoise(self, x: Tensor, F: Tensor, a: Tensor, s: Tensor) -> Tensor:
        """D = c_skip x / alpha + c_out F (Karras et al., 2022, Eq. 7)."""
        sd2 = self.sigma_data**2
        se = s / a
        c_skip = sd2 / (se**2 + sd2)
        c_out = se * self.sigma_data * torch.rsqrt(se**2 + sd2)
        return c_skip * x / a + c_out * F

    @property
    def num_classes(self) -> int | None:
        """The network's number of classes (None: an unconditional network)."""
        return getattr(self.net, "num_classes", None)

    def extra_repr(self) -> str:
        return f"parametrisation={self.parametrisation!r}, sigma_data={self.sigma_data}"
