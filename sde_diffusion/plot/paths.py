"""Sample paths of 1-D (or 2-D) processes over time, and reverse-SDE against probability-flow ODE paths."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from ._common import ArrayLike, _axes, _paths_1d, _paths_any, _times


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
