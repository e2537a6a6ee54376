"""Labels for class-conditional score models: dropout to the null label, and binding a label.

Classifier-free guidance trains one network for s(x, t | y) and s(x, t): each training label
is replaced by the null label with probability p_uncond (Ho & Salimans, 2022, Alg. 1), and
sampling binds a label to the network to get one more ``score_fn(x, t)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def check_p_uncond(p_uncond: float) -> float:
    """p_uncond as a float in [0, 1], else a one-line error."""
    ok = isinstance(p_uncond, (int, float)) and not isinstance(p_uncond, bool)
    if not ok or not math.isfinite(p_uncond) or not 0 <= p_uncond <= 1:
        raise ValueError(f"p_uncond must be a number in [0, 1], got {p_uncond!r}")
    return float(p_uncond)


def drop_labels(
    y: Tensor, p_uncond: float, null_label: int, generator: torch.Generator | None = None
) -> Tensor:
    """Each label replaced by ``null_label`` with probability ``p_uncond`` (independently).

    Ho & Salimans (2022), Alg. 1, line 3. The Bernoulli draws come from ``generator``, so a
    training run that checkpoints it resumes with the same dropped labels. ``p_uncond = 0``
    returns ``y`` and draws nothing.
    """
    p_uncond = check_p_uncond(p_uncond)
    if p_uncond == 0:
        return y
    u = torch.rand(y.shape, generator=generator, device=y.device)
    return torch.where(u < p_uncond, torch.full_like(y, null_label), y)


def check_label(label: object, num_classes: int, what: str = "label") -> int:
    """``label`` as an int in 0 .. num_classes - 1, else a one-line error naming the range."""
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise ValueError(f"{what} must be an integer class, got {label!r}")
    if not 0 <= int(label) < num_classes:
        raise ValueError(f"{what}={label} is out of range: the classes are 0 .. {num_classes - 1}")
    return int(label)


def bind_label(model: Callable[..., Tensor], label: int | None) -> ScoreFn:
    """``score_fn(x, t) = model(x, t, y)`` with y = ``label`` for every sample (None: the null
    label, i.e. ``model(x, t)``). The label tensor is made on x's device, without a host sync.

    For a :class:`~sde_diffusion.parametrisation.ScoreModel` around a class-conditional
    network this is s(x, t | y = label), or s(x, t) for ``label=None``.
    """
    if label is None:
        return lambda x, t: model(x, t)

    def score_fn(x: Tensor, t: Tensor) -> Tensor:
        y = torch.full((x.shape[0],), label, dtype=torch.long, device=x.device)
        return model(x, t, y)

    return score_fn


def cycle_labels(model: Callable[..., Tensor], num_classes: int) -> ScoreFn:
    """``score_fn(x, t) = model(x, t, y)`` with y_i = i mod num_classes: a batch that shows
    every class in turn (the training app's sample figures)."""

    def score_fn(x: Tensor, t: Tensor) -> Tensor:
        return model(x, t, torch.arange(x.shape[0], device=x.device) % num_classes)

    return score_fn
