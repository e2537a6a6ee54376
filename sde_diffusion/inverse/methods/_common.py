"""What every inverse-problem method shares: the observation checked against the operator,
its spectral form (c = U^T y / s, nu = sigma_y / s), Tweedie's estimate and parameter checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..._utils import append_dims
from ..base import Operator

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def check_number(name: str, value: object, minimum: float, *, above: bool = False) -> float:
    """A finite real ``value`` >= ``minimum`` (> with ``above``), as a float; one-line error."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > minimum if above else value >= minimum)
    if not ok:
        rule = f"{'>' if above else '>='} {minimum:g}"
        raise ValueError(f"{name} must be a finite number {rule}, got {value!r}")
    return float(value)


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """An integer ``value`` >= ``minimum``; one-line error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def observation(op: Operator, y: object, event_shape: Sequence[int], batch: int) -> Tensor:
    """``y`` as ``(1 or batch, *obs_shape)`` in float64 on the CPU, checked against ``op``.

    Accepts one observation ``obs_shape`` (shared by the whole batch), ``(1, *obs_shape)`` or
    one per sample ``(batch, *obs_shape)``; anything else is refused naming the allowed shapes.
    """
    if not isinstance(op, Operator):
        raise ValueError(
            f"operator must be a sde_diffusion.inverse.Operator, got {type(op).__name__}"
        )
    obs_shape = op.out_shape(tuple(event_shape))
    y = torch.as_tensor(y).detach().to(device="cpu", dtype=torch.float64)
    if tuple(y.shape) == obs_shape:
        y = y[None]
    if (
        y.ndim != len(obs_shape) + 1
        or tuple(y.shape[1:]) != obs_shape
        or y.shape[0] not in (1, batch)
    ):
        raise ValueError(
            f"y must have shape {obs_shape}, (1, *{obs_shape}) or ({batch}, *{obs_shape}) for "
            f"{op!r} on events {tuple(event_shape)}, got {tuple(y.shape)}"
        )
    if not torch.isfinite(y).all():
        raise ValueError("y must be finite")
    return y


@dataclass(frozen=True)
class Spectral:
    """The observation in the operator's SVD basis (Kawar et al., 2022, Eq. 4).

    With A = U diag(s) V^T, y = A x + sigma_y n reads c = U^T y / s = (V^T x)[:r] + nu * n' with
    ``nu = sigma_y / s``: coordinate i of V^T x is observed with noise level ``nu[i]``. ``c``
    is ``(1 or B, r)``; ``s`` and ``nu`` are ``(r,)``; all float64 on the CPU.
    """

    c: Tensor
    s: Tensor
    nu: Tensor
    Vt: Callable[[Tensor], Tensor]
    V: Callable[[Tensor], Tensor]
    Ut: Callable[[Tensor], Tensor]

    @property
    def rank(self) -> int:
        return int(self.s.numel())


def spectral(op: Operator, y: Tensor, event_shape: Sequence[int]) -> Spectral:
    """:class:`Spectral` form of a checked observation ``y`` (from :func:`observation`); a
    noiseless operator refuses a ``y`` outside its range (the part it cannot explain)."""
    svd = op.svd(tuple(event_shape))
    s = svd.singulars.to(torch.float64)
    coef = svd.Ut(y)
    if op.sigma_y == 0:  # noiseless: y must lie in A's range, U U^T y = y
        gap = (svd.U(coef) - y).reshape(y.shape[0], -1).norm(dim=1).max()
        if gap > 1e-6 * (1 + float(y.abs().max())):
            raise ValueError(
                f"y is outside the range of the noiseless operator {op!r} (rank {s.numel()} of "
                f"{math.prod(y.shape[1:])} observed values; |y - U U^T y| = {float(gap):.3g}): "
                "give an observation it can produce, or sigma_y > 0"
            )
    c = coef / s
    return Spectral(c=c, s=s, nu=op.sigma_y / s, Vt=svd.Vt, V=svd.V, Ut=svd.Ut)


def like(v: Tensor, x: Tensor) -> Tensor:
    """``v`` on the device and dtype of ``x``."""
    return v.to(device=x.device, dtype=x.dtype)


def batch_times(t: Tensor, x: Tensor) -> Tensor:
    """``t`` (scalar or ``(B,)``) as ``(B,)`` on the device and dtype of ``x``."""
    t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


def tweedie(sde: object, score: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """x0_hat(x, t) = (x + sigma(t)^2 s(x, t)) / alpha(t) (Tweedie's formula; Efron, 2011)."""
    alpha, sigma = sde.marginal(batch_times(t, x))
    return (x + append_dims(sigma**2, x.ndim) * score) / append_dims(alpha, x.ndim)
