"""The exact posterior of a Gaussian-mixture prior under a linear-Gaussian observation.

For p(x) = sum_k w_k N(mu_k, S_k) and y = A x + sigma_y n, with G_k = A S_k A^T + sigma_y^2 I:

    p(x | y) = sum_k w'_k N(mu'_k, S'_k),   w'_k ∝ w_k N(y; A mu_k, G_k),
    mu'_k = mu_k + S_k A^T G_k^-1 (y - A mu_k),   S'_k = S_k - S_k A^T G_k^-1 A S_k

(Bishop, 2006, Eqs. 2.113-2.117 per component; the weights are each component's evidence).
The result is a :class:`GaussianMixture` with full covariances, so its exact samples, its
noised marginals p_t(x | y) (``at``) and their exact scores (``score_fn(sde)``) come for free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..mixture import GaussianMixture
from .base import Operator

_REL_FLOOR = 1e-12  # relative eigenvalue floor that keeps a degenerate posterior PD


def _observation(op: Operator, prior: GaussianMixture, y: Tensor) -> Tensor:
    obs_shape = op.out_shape(prior.event_shape)
    y = torch.as_tensor(y).detach().to(device="cpu", dtype=torch.float64)
    if tuple(y.shape) == (1, *obs_shape):
        y = y[0]
    if tuple(y.shape) != obs_shape:
        raise ValueError(
            f"y must be one observation of shape {obs_shape} (or (1, *{obs_shape})), "
            f"got {tuple(y.shape)}"
        )
    if not torch.isfinite(y).all():
        raise ValueError("y must be finite")
    return y.reshape(-1)


def _parts(prior: GaussianMixture, op: Operator, y: Tensor) -> tuple[Tensor, ...]:
    """(log w_k + log N(y; A mu_k, G_k), mu'_k, S'_k) in float64."""
    yf = _observation(op, prior, y)
    A = op.matrix(prior.event_shape)  # (M, D)
    M, D = A.shape
    mu = prior.means.reshape(prior.n_components, D)
    S = prior.component_covs()  # (K, D, D)
    AS = torch.einsum("md,kde->kme", A, S)  # (K, M, D)
    G = torch.einsum("kme,ne->kmn", AS, A) + op.sigma_y**2 * torch.eye(M, dtype=torch.float64)
    G = 0.5 * (G + G.transpose(1, 2))
    L, info = torch.linalg.cholesky_ex(G)
    if (info != 0).any():
        k = int(torch.nonzero(info)[0, 0])
        raise ValueError(
            f"A S_k A^T + sigma_y^2 I is singular for component {k}: with sigma_y = 0 the "
            "operator must have full row rank (observe fewer or independent combinations)"
        )
    resid = yf - mu @ A.T  # (K, M)
    white = torch.linalg.solve_triangular(L, resid[:, :, None], upper=False)[:, :, 0]
    log_det = 2 * torch.diagonal(L, dim1=1, dim2=2).log().sum(-1)
    log_lik = -0.5 * ((white**2).sum(-1) + log_det + M * math.log(2 * math.pi))
    gain_t = torch.cholesky_solve(AS, L)  # G^-1 A S = K^T, (K, M, D)
    post_mu = mu + torch.einsum("kmd,km->kd", gain_t, resid)
    # Joseph form (I - K A) S (I - K A)^T + sigma_y^2 K K^T: symmetric PSD under rounding.
    IKA = torch.eye(D, dtype=torch.float64) - torch.einsum("kmd,me->kde", gain_t, A)
    post_S = IKA @ S @ IKA.transpose(1, 2)
    post_S = post_S + op.sigma_y**2 * gain_t.transpose(1, 2) @ gain_t
    post_S = 0.5 * (post_S + post_S.transpose(1, 2))
    return prior.weights.log() + log_lik, post_mu, post_S


def _positive_definite(S: Tensor) -> Tensor:
    """Raise eigenvalues below 1e-12 x the largest to that floor (degenerate when sigma_y = 0)."""
    lam, U = torch.linalg.eigh(S)
    floor = _REL_FLOOR * lam.amax(-1, keepdim=True).clamp_min(1e-300)
    if (lam >= floor).all():
        return S
    lam = torch.maximum(lam, floor)
    out = (U * lam[:, None, :]) @ U.transpose(1, 2)
    return 0.5 * (out + out.transpose(1, 2))


def posterior(prior: GaussianMixture, operator: Operator, y: Tensor) -> GaussianMixture:
    """The exact posterior p(x | y) of a mixture prior under y = A x + sigma_y n.

    Args:
        prior: the mixture, any covariance kind, events ``(D,)`` or images ``(C, H, W)``
            (the dense ``(D, D)`` covariances must fit in memory).
        operator: the observation operator, with its ``sigma_y`` (0 allowed).
        y: one observation, of shape ``operator.out_shape(prior.event_shape)``.

    Returns:
        a :class:`GaussianMixture` over flattened events ``(K, D)`` with full covariances (use
        :func:`event_score_fn` to score image-shaped ``x``), float64 parameters and the prior's
        dtype. Weights w'_k ∝ w_k N(y; A mu_k, A S_k A^T + sigma_y^2 I) (Bishop, 2006, Eq. 2.115).

    With sigma_y = 0 the posterior is degenerate along A's row space (e.g. the observed pixels);
    its covariance eigenvalues are raised to 1e-12 x the largest of each component, so that the
    result is a proper mixture, exact to that relative level.
    """
    log_w, mu, S = _parts(prior, operator, y)
    weights = torch.softmax(log_w, dim=0)
    return GaussianMixture(weights, mu, covs=_positive_definite(S), dtype=prior.dtype)


def log_evidence(prior: GaussianMixture, operator: Operator, y: Tensor) -> float:
    """log p(y) = logsumexp_k [log w_k + log N(y; A mu_k, A S_k A^T + sigma_y^2 I)]."""
    return float(torch.logsumexp(_parts(prior, operator, y)[0], dim=0))


def event_score_fn(
    mixture: GaussianMixture, sde: object, event_shape: Sequence[int]
) -> Callable[[Tensor, Tensor], Tensor]:
    """``score_fn(x, t)`` on ``(B, *event_shape)`` for a mixture over the flattened events."""
    event_shape = tuple(int(s) for s in event_shape)
    if math.prod(event_shape) != mixture.dim:
        raise ValueError(
            f"event shape {event_shape} has {math.prod(event_shape)} entries, the mixture "
            f"{mixture.dim}"
        )

    def score_fn(x: Tensor, t: Tensor) -> Tensor:
        return mixture.score(x.reshape(x.shape[0], -1), t, sde).reshape(x.shape)

    return score_fn
