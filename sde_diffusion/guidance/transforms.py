"""Guidance as score transforms: each returns one more ``score_fn(x, t)`` that any solver runs.

Solvers know nothing of guidance (model: k-diffusion's ``CFGDenoiser``, a wrapper around the
denoiser). No transform synchronises with the host: time intervals use ``torch.where``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .._utils import append_dims

ScoreFn = Callable[[Tensor, Tensor], Tensor]
LogProbFn = Callable[[Tensor, Tensor], Tensor]


def _scale(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _interval(t_interval: Sequence[float] | None) -> tuple[float, float] | None:
    if t_interval is None:
        return None
    if isinstance(t_interval, (str, bytes)) or not isinstance(t_interval, Sequence):
        raise ValueError(f"t_interval must be a pair (t_lo, t_hi), got {t_interval!r}")
    if len(t_interval) != 2:
        raise ValueError(f"t_interval must be a pair (t_lo, t_hi), got {t_interval!r}")
    lo, hi = (_scale("t_interval", v) for v in t_interval)
    if not lo < hi:
        raise ValueError(f"t_interval must have t_lo < t_hi, got {t_interval!r}")
    return lo, hi


def _gate(scale: float, interval: tuple[float, float] | None, x: Tensor, t: Tensor) -> Tensor:
    """``scale`` where interval[0] <= t <= interval[1], else 0, broadcast against x (per
    sample, by ``torch.where``: no host sync); the plain scale without an interval."""
    if interval is None:
        return torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    tt = torch.as_tensor(t, device=x.device)
    inside = (tt >= interval[0]) & (tt <= interval[1])
    gate = torch.where(inside, scale, 0.0).to(x.dtype)
    return append_dims(gate.expand(x.shape[0]) if gate.ndim == 0 else gate, x.ndim)


def cfg_score(
    cond_score: ScoreFn,
    uncond_score: ScoreFn,
    w: float,
    t_interval: Sequence[float] | None = None,
) -> ScoreFn:
    """Classifier-free guidance s = s(x|y) + w (s(x|y) - s(x)); Ho & Salimans (2022), Eq. 6.

    Args:
        cond_score: ``s(x, t | y)``, e.g. a conditional model with its label bound.
        uncond_score: ``s(x, t)``, e.g. the same model with the null label.
        w: the guidance scale (w = 0: the conditional score; w = -1: the unconditional one).
        t_interval: ``(t_lo, t_hi)``: guide only for t_lo <= t <= t_hi, elsewhere s(x|y)
            (Kynkäänniemi et al., 2024, Eq. 3); chosen per sample with ``torch.where``.

    Two score evaluations per call. w = 0 gives s(x|y) bit for bit (s + 0 * finite = s).
    """
    w = _scale("guidance scale w", w)
    interval = _interval(t_interval)

    def score_fn(x: Tensor, t: Tensor) -> Tensor:
        cond = cond_score(x, t)
        diff = cond - uncond_score(x, t)
        if interval is None:
            return cond + w * diff
        return cond + _gate(w, interval, x, t) * diff

    return score_fn


def classifier_guided_score(
    score: ScoreFn,
    log_prob_classifier: LogProbFn,
    scale: float = 1.0,
    t_interval: Sequence[float] | None = None,
) -> ScoreFn:
    """s(x, t) + scale * grad_x log p_t(y | x); Song et al. (2021), Eq. 14; Dhariwal & Nichol
    (2021), Alg. 1.

    Args:
        score: the unconditional ``score_fn(x, t)``.
        log_prob_classifier: ``(x, t) -> (B,)``, log p_t(y | x) of the target label(s), e.g.
            :meth:`ExactClassifier.log_prob_fn` or a noise-conditional classifier network.
        scale: the guidance scale (1: the exact conditional score when both parts are exact).
        t_interval: ``(t_lo, t_hi)``: guide only there, elsewhere s(x, t) (as in
            :func:`cfg_score`); the gradient is still computed, and multiplied by 0.

    The gradient is taken by autograd inside ``torch.enable_grad()``, since sampling runs
    under ``no_grad``; the result is detached.
    """
    scale = _scale("guidance scale", scale)
    interval = _interval(t_interval)

    def score_fn(x: Tensor, t: Tensor) -> Tensor:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(log_prob_classifier(xg, t).sum(), xg)
        if interval is None:
            return score(x, t) + scale * grad.detach()
        return score(x, t) + _gate(scale, interval, x, t) * grad.detach()

    return score_fn
