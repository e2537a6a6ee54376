"""Gaussian mixtures with exact diffused scores: the known-answer data set of every test.

Under a forward SDE with marginal x_t = alpha(t) x_0 + sigma(t) z, a mixture
p_0 = sum_k w_k N(mu_k, S_k) diffuses to p_t = sum_k w_k N(alpha mu_k, alpha^2 S_k + sigma^2 I),
so grad log p_t(x) = sum_k r_k(x) (alpha mu_k - x) / (alpha^2 S_k + sigma^2) with
responsibilities r_k = softmax_k(log w_k + log N_k(x)) (Song et al., 2021, Sec. 3.3 and App. B;
Karras et al., 2022, App. B.3). Only ``sde.marginal`` is used, never the SDE's class.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

_CHUNK_ELEMENTS = 1 << 24  # bound on the (B, K, D) work array of score / log-density


def _as_float64(name: str, value: object) -> Tensor:
    if isinstance(value, Tensor):
        out = value.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            out = torch.from_numpy(np.asarray(value, dtype=np.float64).copy())
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be an array of real numbers: {err}") from err
    if not torch.isfinite(out).all():
        raise ValueError(f"{name} must be finite")
    return out


class GaussianMixture:
    """p(x) = sum_k w_k N(x; mu_k, S_k) over events of any shape, with exact diffused scores.

    Args:
        weights: ``(K,)`` non-negative, summing to 1 (tolerance 1e-6; renormalised exactly).
        means: ``(K, *event_shape)``; any event rank, e.g. points ``(K, D)`` or images ``(K, C, H, W)``.
        stds: ``(K,)`` isotropic, or ``(K, *event_shape)`` diagonal standard deviations, > 0.
        covs: ``(K, D, D)`` full symmetric positive definite covariances (flat events ``(K, D)`` only).
            Give exactly one of ``stds`` and ``covs``.
        dtype: dtype of ``sample``, ``mean`` and ``covariance`` when not asked otherwise; default
            the dtype of ``means`` if it is a floating tensor, else torch's default dtype.

    Parameters are kept in float64 on the CPU and copied lazily to the device and dtype of each
    input ``x``. Full covariances are diagonalised once (S_k = U_k diag(lambda_k) U_k^T, torch.linalg.eigh):
    alpha^2 S_k + sigma^2 I = U_k diag(alpha^2 lambda_k + sigma^2) U_k^T then serves every t and per-sample
    times without a Cholesky factorisation per (sample, component); the Cholesky factor checks positive
    definiteness and draws samples.
    """

    def __init__(
        self,
        weights: object,
        means: object,
        stds: object | None = None,
        covs: object | None = None,
        *,
        dtype: torch.dtype | None = None,
    ) -> None:
        w = _as_float64("weights", weights)
        if w.ndim != 1 or w.numel() < 1:
            raise ValueError(f"weights must have shape (K,) with K >= 1, got {tuple(w.shape)}")
        if (w < 0).any():
            raise ValueError("weights must be non-negative")
        if abs(float(w.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1 (tolerance 1e-6), got {float(w.sum())!r}")
        K = w.numel()
        mu = _as_float64("means", means)
        if mu.ndim < 2 or mu.shape[0] != K:
            raise ValueError(
                f"means must have shape (K, *event_shape) = ({K}, ...) with at least one event "
                f"dimension (use (K, 1) for 1-D data), got {tuple(mu.shape)}"
            )
        if (stds is None) == (covs is None):
            raise ValueError("give exactly one of stds (isotropic or diagonal) or covs (full)")
        if dtype is None:
            is_float = isinstance(means, Tensor) and means.is_floating_point()
            dtype = means.dtype if is_float else torch.get_default_dtype()
        self.dtype = dtype
        self.weights = w / w.sum()
        self.means = mu
        self.event_shape = tuple(mu.shape[1:])
        self.dim = int(mu[0].numel())
        self._mu = mu.reshape(K, self.dim)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple] = {}
        self.stds: Tensor | None = None
        self.covs: Tensor | None = None
        if stds is not None:
            s = _as_float64("stds", stds)
            if tuple(s.shape) == (K,):
                self.kind = "isotropic"
                var = s[:, None] ** 2
            elif tuple(s.shape) == (K, *self.event_shape):
                self.kind = "diagonal"
                var = s.reshape(K, self.dim) ** 2
            else:
                raise ValueError(
                    f"stds must have shape (K,) = ({K},) or (K, *event_shape) = "
                    f"{(K, *self.event_shape)}, got {tuple(s.shape)}"
                )
            if (s <= 0).any():
                raise ValueError("stds must be > 0")
            self.stds, self._var, self._basis = s, var, None
            self._chol = None
        else:
            c = _as_float64("covs", covs)
            D = self.dim
            if mu.ndim != 2 or tuple(c.shape) != (K, D, D):
                raise ValueError(
                    f"covs must have shape (K, D, D) = ({K}, {D}, {D}) with flat means (K, D), "
                    f"got covs {tuple(c.shape)} and means {tuple(mu.shape)}"
                )
            scale = c.abs().amax(dim=(1, 2), keepdim=True)
            if ((c - c.transpose(1, 2)).abs() > 1e-10 * scale).any():
                raise ValueError("covs must be symmetric (tolerance 1e-10 relative)")
            c = 0.5 * (c + c.transpose(1, 2))
            chol, info = torch.linalg.cholesky_ex(c)
            if (info != 0).any():
                bad = int(torch.nonzero(info)[0, 0])
                raise ValueError(f"covs must be positive definite; covs[{bad}] is not")
            lam, basis = torch.linalg.eigh(c)
            self.kind = "full"
            self.covs, self._chol, self._var, self._basis = c, chol, lam, basis

    # ---------------------------------------------------------------- parameters
    @property
    def n_components(self) -> int:
        return self.weights.numel()

    def component_stds(self) -> Tensor:
        """Per-axis standard deviations ``(K, D)`` in float64 (sqrt of the covariance diagonal)."""
        if self.kind == "full":
            return torch.diagonal(self.covs, dim1=1, dim2=2).sqrt()
        return self._var.expand(-1, self.dim).sqrt()

    def component_covs(self) -> Tensor:
        """Component covariances ``(K, D, D)`` in float64."""
        if self.kind == "full":
            return self.covs
        return torch.diag_embed(self._var.expand(-1, self.dim))

    def _params(self, device: torch.device, dtype: torch.dtype) -> tuple:
        key = (device, dtype)
        if key not in self._cache:
            basis = None if self._basis is None else self._basis.to(device, dtype)
            self._cache[key] = (
                self.weights.log().to(device, dtype),
                self._mu.to(device, dtype),
                self._var.to(device, dtype),
                basis,
            )
        return self._cache[key]

    # ---------------------------------------------------------------- data distribution
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw ``(n, *event_shape)`` exact samples: k ~ Categorical(w), x = mu_k + L_k z."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        dtype = self.dtype if dtype is None else dtype
        k = torch.multinomial(self.weights.to(device), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, device=device, dtype=dtype)
        mu = self._mu.to(device, dtype)[k]
        if self.kind == "full":
            x = mu + (self._chol.to(device, dtype)[k] @ z[:, :, None])[:, :, 0]
        else:
            x = mu + self._var.sqrt().to(device, dtype)[k] * z
        return x.reshape(n, *self.event_shape)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p_0(x), one value per sample, shape ``(B,)``."""
        one = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
        return self._evaluate(x, one, torch.zeros_like(one), score=False)

    def mean(self) -> Tensor:
        """E[x] = sum_k w_k mu_k, shape ``event_shape``."""
        return (self.weights @ self._mu).reshape(self.event_shape).to(self.dtype)

    def covariance(self) -> Tensor:
        """Cov[x] = sum_k w_k (S_k + mu_k mu_k^T) - m m^T over the flattened event, ``(D, D)``."""
        m = self.weights @ self._mu
        second = torch.einsum("k,kij->ij", self.weights, self.component_covs())
        second = second + torch.einsum("k,ki,kj->ij", self.weights, self._mu, self._mu)
        return (second - torch.outer(m, m)).to(self.dtype)

    # ---------------------------------------------------------------- diffused distribution
    def at(self, t: float | Tensor, sde: object) -> GaussianMixture:
        """The marginal p_t: means alpha(t) mu_k, covariances alpha^2 S_k + sigma^2 I (scalar t)."""
        tt = torch.as_tensor(t, dtype=torch.float64)
        if tt.numel() != 1:
            raise ValueError(f"t must be a scalar time, got shape {tuple(tt.shape)}")
        alpha, sigma = sde.marginal(tt.reshape(1))
        a, s = float(alpha.reshape(())), float(sigma.reshape(()))
        if self.kind == "full":
            eye = torch.eye(self.dim, dtype=torch.float64)
            covs = a**2 * self.covs + s**2 * eye
            return GaussianMixture(self.weights, a * self.means, covs=covs, dtype=self.dtype)
        stds = (a**2 * self.stds**2 + s**2).sqrt()
        return GaussianMixture(self.weights, a * self.means, stds=stds, dtype=self.dtype)

    def score(self, x: Tensor, t: float | Tensor, sde: object) -> Tensor:
        """grad_x log p_t(x), shaped like ``x``; ``t`` scalar or per-sample ``(B,)``."""
        alpha, sigma = self._marginal(x, t, sde)
        return self._evaluate(x, alpha, sigma, score=True)

    def marginal_log_prob(self, x: Tensor, t: float | Tensor, sde: object) -> Tensor:
        """log p_t(x), shape ``(B,)``; ``t`` scalar or per-sample ``(B,)``."""
        alpha, sigma = self._marginal(x, t, sde)
        return self._evaluate(x, alpha, sigma, score=False)

    def score_fn(self, sde: object) -> Callable[[Tensor, Tensor], Tensor]:
        """``score_fn(x, t)`` for :func:`sde_diffusion.sampling.sample`."""
        return lambda x, t: self.score(x, t, sde)

    def _marginal(self, x: Tensor, t: float | Tensor, sde: object) -> tuple[Tensor, Tensor]:
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        elif tuple(t.shape) != (x.shape[0],):
            raise ValueError(
                f"t must be a scalar or of shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}"
            )
        return sde.marginal(t)

    def _evaluate(self, x: Tensor, alpha: Tensor, sigma: Tensor, *, score: bool) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x must have shape (B, *{self.event_shape}), got {tuple(x.shape)}")
        xf = x.reshape(x.shape[0], self.dim)
        chunk = max(1, _CHUNK_ELEMENTS // (self.n_components * self.dim))
        parts = [
            self._evaluate_flat(
                xf[i : i + chunk], alpha[i : i + chunk], sigma[i : i + chunk], score
            )
            for i in range(0, xf.shape[0], chunk)
        ]
        out = torch.cat(parts) if len(parts) > 1 else parts[0]
        return out.reshape(x.shape) if score else out

    def _evaluate_flat(self, x: Tensor, alpha: Tensor, sigma: Tensor, score: bool) -> Tensor:
        """Component log-densities in each component's eigenbasis, then logsumexp / softmax."""
        log_w, mu, var0, basis = self._params(x.device, x.dtype)
        a = alpha[:, None, None]
        diff = x[:, None, :] - a * mu  # (B, K, D)
        if basis is not None:
            diff = torch.einsum("bkd,kde->bke", diff, basis)  # U_k^T (x - alpha mu_k)
        var = a**2 * var0 + sigma[:, None, None] ** 2  # (B, K, 1) isotropic or (B, K, D)
        log_det = var.log().sum(-1) * (self.dim // var.shape[-1])
        maha = (diff**2 / var).sum(-1)
        logits = log_w - 0.5 * (maha + log_det + self.dim * math.log(2 * math.pi))
        if not score:
            return torch.logsumexp(logits, dim=1)
        g = torch.softmax(logits, dim=1)[:, :, None] * diff / var
        if basis is not None:
            return -torch.einsum("bke,kde->bd", g, basis)
        return -g.sum(dim=1)

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(K={self.n_components}, event_shape={self.event_shape}, "
            f"kind={self.kind!r})"
        )
