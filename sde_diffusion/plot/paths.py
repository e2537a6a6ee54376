"""Sample paths of 1-D (or 2-D) processes over time, and reverse-SDE against probability-flow ODE paths.

Also holds the small private input helpers (tensor/array -> float64 numpy, shape checks) shared by the
other plotting modules.
"""

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


def sample_paths(
    times: ArrayLike,
    paths: ArrayLike,
    ax: Axes | None = None,
    *,
    max_paths: int = 50,
    color: str | None = None,
    label: str | None = None,
    alpha: float = 0.5,
    title: str | None = None,
) -> Axes:
    """Draw min(N, max_paths) paths x_t against t; ``paths`` (T, N) or (T, N, 1), ``times`` (T,).

    Decreasing times (reverse process) are drawn on an increasing t axis. Only the first line carries
    ``label`` (one legend entry).
    """
    if max_paths < 1:
        raise ValueError(f"max_paths must be >= 1, got {max_paths}")
    t = _times(times)
    p = _paths_1d(paths, t.shape[0])
    ax = _axes(ax)
    for i in range(min(p.shape[1], max_paths)):
        ax.plot(t, p[:, i], color=color, alpha=alpha, lw=0.8, label=label if i == 0 else None)
    if t.shape[0] > 1:
        ax.set_xlim(float(t.min()), float(t.max()))
    ax.set(xlabel="$t$", ylabel="$x_t$")
    if label is not None:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax


def sde_vs_ode_paths(
    times: ArrayLike,
    sde_paths: ArrayLike,
    ode_paths: ArrayLike,
    ax: Axes | None = None,
    *,
    max_paths: int = 20,
    title: str | None = None,
) -> Axes:
    """Reverse-SDE paths (thin, coloured) against probability-flow ODE paths (black, dashed).

    1-D paths (T, N) / (T, N, 1) are drawn over t; 2-D paths (T, N, 2) in the plane with start markers.
    The legend has exactly two entries: "reverse SDE" and "probability-flow ODE".
    """
    if max_paths < 1:
        raise ValueError(f"max_paths must be >= 1, got {max_paths}")
    t = _times(times)
    s = _paths_any(sde_paths, t.shape[0], "sde_paths")
    o = _paths_any(ode_paths, t.shape[0], "ode_paths")
    if s.shape[2] != o.shape[2]:
        raise ValueError(
            f"sde_paths {s.shape} and ode_paths {o.shape} must have the same dimension"
        )
    ax = _axes(ax, (5.5, 5.0) if s.shape[2] == 2 else (6.5, 4.0))
    colors = plt.get_cmap("tab10")
    ns, no = min(s.shape[1], max_paths), min(o.shape[1], max_paths)
    sde_style = {"lw": 0.8, "alpha": 0.7}
    ode_style = {"color": "k", "ls": "--", "lw": 1.2}
    if s.shape[2] == 1:
        for i in range(ns):
            lab = "reverse SDE" if i == 0 else None
            ax.plot(t, s[:, i, 0], color=colors(i % 10), label=lab, **sde_style)
        for i in range(no):
            lab = "probability-flow ODE" if i == 0 else None
            ax.plot(t, o[:, i, 0], label=lab, **ode_style)
        if t.shape[0] > 1:
            ax.set_xlim(float(t.min()), float(t.max()))
        ax.set(xlabel="$t$", ylabel="$x_t$")
    else:
        for i in range(ns):
            lab = "reverse SDE" if i == 0 else None
            ax.plot(s[:, i, 0], s[:, i, 1], color=colors(i % 10), label=lab, **sde_style)
        for i in range(no):
            lab = "probability-flow ODE" if i == 0 else None
            ax.plot(o[:, i, 0], o[:, i, 1], label=lab, **ode_style)
        starts = np.concatenate([s[0, :ns], o[0, :no]], axis=0)
        ax.scatter(starts[:, 0], starts[:, 1], marker="o", s=14, color="k", zorder=3)
        ax.set(xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax
