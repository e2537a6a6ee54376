"""The noise floor of a two-sample metric: its value between independent exact sample sets."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..mixture import GaussianMixture


@dataclass(frozen=True)
class NoiseFloor:
    """Statistics of ``metric(x, y)`` over repeats, x and y independent exact sets of size n.

    ``mean`` is the floor of a biased metric (sliced Wasserstein); for an unbiased one (MMD^2_u,
    mean 0) the floor is the spread: ``std`` or ``q95``, the 95 % quantile of |value|.
    """

    mean: float
    std: float
    q95: float
    values: tuple[float, ...]


def noise_floor(
    metric: Callable[[Tensor, Tensor], float],
    mixture: GaussianMixture,
    n: int,
    repeats: int = 10,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> NoiseFloor:
    """Evaluate ``metric`` on ``repeats`` pairs of independent ``mixture.sample(n)`` sets.

    A sampler whose metric lies within this floor is indistinguishable from exact sampling at n.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"repeats must be an integer >= 2, got {repeats!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    values = []
    for _ in range(repeats):
        x = mixture.sample(n, generator, dtype=dtype)
        y = mixture.sample(n, generator, dtype=dtype)
        values.append(float(metric(x, y)))
    v = torch.tensor(values, dtype=torch.float64)
    return NoiseFloor(
        mean=float(v.mean()),
        std=float(v.std()),
        q95=float(torch.quantile(v.abs(), 0.95)),
        values=tuple(values),
    )


def standard_error(floor: NoiseFloor) -> float:
    """Standard error of ``floor.mean``: std / sqrt(repeats)."""
    return floor.std / math.sqrt(len(floor.values))
