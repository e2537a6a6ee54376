"""Continuous-time denoising score matching, written once for any SDE with a Gaussian marginal.

    J(theta) = E_{t ~ U[eps, T]} lambda(t) E_{x_0, z} || s_theta(alpha x_0 + sigma z, t) + z / sigma ||^2

(Song et al., 2021, Eq. 7; Vincent, 2011). Its minimiser is the true score of p_t for every t
with lambda(t) > 0. Weightings: lambda = sigma^2 (Song et al., 2021, Eq. 7 with
lambda ∝ 1/E||grad log p_0t||^2) and the likelihood weighting lambda = g^2, for which J bounds the
negative log-likelihood (Song et al., 2021b, "Maximum likelihood training of score-based
diffusion models", Thm. 1). With importance sampling, t ~ q(t) ∝ g^2 / sigma^2 (Song et al.,
2021b, Sec. 5) and each term is reweighted by lambda / ((T - eps) q), an unbiased estimate of
the same J. Only ``sde.marginal``, ``sde.diffusion`` and ``sde.T`` are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._utils import append_dims

WEIGHTINGS = ("sigma2", "likelihood")
REDUCTIONS = ("mean", "sum")
_GRID_POINTS = 8193


class DSMLoss:
    """Denoising score matching loss ``loss(model, x0, generator=None)`` -> scalar.

    Args:
        sde: the forward SDE (``marginal``, ``diffusion``, ``T``).
        weighting: "sigma2" (lambda = sigma^2, default) or "likelihood" (lambda = g^2).
        importance_sampling: draw t from q(t) ∝ g(t)^2 / sigma(t)^2 and reweight; only with
            the likelihood weighting, whose variance it reduces.
        reduction: "mean" or "sum" of the squared error over the data dimensions; then the
            mean over the batch.
        eps: the smallest time, in (0, T).

    ``model(x, t)`` must return the score, e.g. a
    :class:`~sde_diffusion.parametrisation.ScoreModel`; with ``labels`` (``(B,)`` integers, the
    null label among them for classifier-free guidance) it is called as ``model(x, t, labels)``
    and J becomes the conditional objective for s(x, t | y).
    """

    def __init__(
        self,
        sde: object,
        weighting: str = "sigma2",
        importance_sampling: bool = False,
        reduction: str = "mean",
        eps: float = 1e-5,
    ) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if not isinstance(importance_sampling, bool):
            raise ValueError(f"importance_sampling must be a bool, got {importance_sampling!r}")
        if importance_sampling and weighting != "likelihood":
            raise ValueError(
                "importance_sampling=True samples t ∝ g^2/sigma^2 for weighting='likelihood'; "
                f"got weighting={weighting!r}"
            )
        self.T = float(sde.T)
        if not (math.isfinite(eps) and 0 < eps < self.T):
            raise ValueError(f"eps must lie in (0, T) = (0, {self.T}), got {eps!r}")
        self.sde = sde
        self.weighting = weighting
        self.importance_sampling = importance_sampling
        self.reduction = reduction
        self.eps = float(eps)
        self._cache: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}
        if importance_sampling:
            self._build_grid()

    def _build_grid(self) -> None:
        """Piecewise-linear CDF of log t under q(t) ∝ g^2/sigma^2, on a log-spaced grid.

        The density in u = log t, f(e^u) e^u, is integrated by the trapezoidal rule; sampling
        then inverts the piecewise-linear CDF exactly, so q is known in closed form per cell and
        the weights are exactly those of the sampler (no bias from the grid).
        """
        u = torch.linspace(math.log(self.eps), math.log(self.T), _GRID_POINTS, dtype=torch.float64)
        t = u.exp()
        _, sigma = self.sde.marginal(t)
        h = self.sde.diffusion(t) ** 2 / sigma**2 * t
        if not bool(torch.isfinite(h).all()) or bool((h <= 0).any()):
            raise ValueError("g(t)^2 / sigma(t)^2 must be finite and > 0 on [eps, T]")
        cdf = torch.cat([h.new_zeros(1), torch.cumsum(0.5 * (h[1:] + h[:-1]) * u.diff(), 0)])
        self.normaliser = float(cdf[-1])  #: Z = int_eps^T g^2 / sigma^2 dt (trapezoidal)
        cdf = cdf / cdf[-1]
        self._grid = (u, cdf, cdf.diff() / u.diff())

    def _grid_on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        if device not in self._cache:
            self._cache[device] = tuple(v.to(device) for v in self._grid)
        return self._cache[device]

    def _weight(self, t: Tensor) -> Tensor:
        if self.weighting == "sigma2":
            return self.sde.marginal(t)[1] ** 2
        return self.sde.diffusion(t) ** 2

    def sample_time(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[Tensor, Tensor]:
        """Times t and weights w with E[w(t) h(t)] = 1/(T - eps) int_eps^T lambda(t) h(t) dt."""
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        v = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        if not self.importance_sampling:
            t = self.eps + (self.T - self.eps) * v
            return t.to(dtype), self._weight(t).to(dtype)
        u, cdf, slope = self._grid_on(v.device)
        i = (torch.searchsorted(cdf, v, right=True) - 1).clamp(0, slope.numel() - 1)
        logt = u[i] + (v - cdf[i]) / slope[i]
        t = logt.exp().clamp(self.eps, self.T)
        q = slope[i] / t  # density of t: d cdf / d log t * d log t / dt
        w = self._weight(t) / ((self.T - self.eps) * q)
        return t.to(dtype), w.to(dtype)

    def per_sample(
        self,
        model: Callable[..., Tensor],
        x0: Tensor,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """One unbiased estimate of J per sample, shape ``(B,)``."""
        if x0.ndim < 2:
            raise ValueError(f"x0 must have shape (B, *event_shape), got {tuple(x0.shape)}")
        B = x0.shape[0]
        t, w = self.sample_time(B, generator=generator, device=x0.device, dtype=x0.dtype)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        alpha, sigma = self.sde.marginal(t)
        s = append_dims(sigma, x0.ndim)
        xt = append_dims(alpha, x0.ndim) * x0 + s * z
        score = model(xt, t) if labels is None else model(xt, t, labels)
        err = (s * score + z).reshape(B, -1) ** 2  # sigma^2 || s + z / sigma ||^2
        err = err.mean(1) if self.reduction == "mean" else err.sum(1)
        if self.weighting == "sigma2" and not self.importance_sampling:
            return err
        return w / sigma**2 * err

    def __call__(
        self,
        model: Callable[..., Tensor],
        x0: Tensor,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        """The batch mean of :meth:`per_sample`: a scalar to minimise."""
        return self.per_sample(model, x0, generator, labels).mean()

    def __repr__(self) -> str:
        return (
            f"DSMLoss(weighting={self.weighting!r}, importance_sampling="
            f"{self.importance_sampling}, reduction={self.reduction!r}, eps={self.eps})"
        )
