"""Rank-agnostic broadcasting helpers."""

from __future__ import annotations

from torch import Tensor

from solvers._utils import append_dims

__all__ = ["append_dims", "sum_except_batch"]


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum over every dimension but the first: one value per sample."""
    return x.reshape(x.shape[0], -1).sum(dim=1)
