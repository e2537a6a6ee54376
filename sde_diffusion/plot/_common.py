"""Private helpers shared by the plotting modules: inputs to float64 numpy with shape checks,
a new axes when none is given, and robust axis limits."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

ArrayLike = Any  # torch.Tensor | np.ndarray | sequence of floats


def _np(x: ArrayLike, name: str) -> np.ndarray:
    """Convert a Tensor (any device/dtype) or array-like to a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().double().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be a Tensor or numeric array, got {type(x).__name__}"
        ) from err


def _times(times: ArrayLike, name: str = "times") -> np.ndarray:
    t = _np(times, name)
    if t.ndim != 1 or t.shape[0] < 1:
        raise ValueError(f"{name} must have shape (T,) with T >= 1, got {t.shape}")
    return t


def _paths_1d(paths: ArrayLike, T: int, name: str = "paths") -> np.ndarray:
    """Check ``paths`` of shape (T, N) or (T, N, 1) against len(times) = T; return (T, N)."""
    p = _np(paths, name)
    if p.ndim == 3 and p.shape[2] == 1:
        p = p[..., 0]
    if p.ndim != 2:
        raise ValueError(f"{name} must have shape (T, N) or (T, N, 1), got {p.shape}")
    if p.shape[0] != T:
        raise ValueError(f"times length {T} must match {name}' first dimension {p.shape[0]}")
    return p


def _paths_any(paths: ArrayLike, T: int, name: str) -> np.ndarray:
    """(T, N), (T, N, 1) -> (T, N, 1); (T, N, 2) kept. Checked against len(times) = T."""
    p = _np(paths, name)
    if p.ndim == 2:
        p = p[..., None]
    if p.ndim != 3 or p.shape[2] not in (1, 2):
        raise ValueError(f"{name} must have shape (T, N), (T, N, 1) or (T, N, 2), got {p.shape}")
    if p.shape[0] != T:
        raise ValueError(f"times length {T} must match {name}' first dimension {p.shape[0]}")
    return p


def _axes(ax: Axes | None, figsize: tuple[float, float] = (6.5, 4.0)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _limits(v: np.ndarray, q: float = 0.001, pad: float = 0.15) -> tuple[float, float]:
    """The [q, 1 - q] quantile range of the finite values of ``v``, widened by ``pad`` of its width."""
    v = v[np.isfinite(v)]
    if v.size == 0:
        return -1.0, 1.0
    lo, hi = np.quantile(v, q), np.quantile(v, 1 - q)
    w = max(hi - lo, 1e-6)
    return float(lo - pad * w), float(hi + pad * w)
