"""Quiver plots of 2-D score fields s(x, t) = grad_x log p_t(x) on a grid, at one or several times."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ._common import _axes, _np

ScoreFn = Callable[[Tensor, Tensor], Tensor]
Lim = tuple[tuple[float, float], tuple[float, float]]


def _check_lim(lim: Lim, n: int) -> tuple[float, float, float, float]:
    if n < 2:
        raise ValueError(f"n must be >= 2 (grid points per axis), got {n}")
    try:
        (x0, x1), (y0, y1) = lim
    except (TypeError, ValueError) as err:
        raise ValueError(f"lim must be ((xmin, xmax), (ymin, ymax)), got {lim!r}") from err
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"lim must have xmin < xmax and ymin < ymax, got {lim!r}")
    return float(x0), float(x1), float(y0), float(y1)


def score_field(
    score: ScoreFn,
    t: float,
    ax: Axes | None = None,
    *,
    lim: Lim = ((-3.0, 3.0), (-3.0, 3.0)),
    n: int = 21,
    color: str = "tab:blue",
    label: str | None = None,
    normalise: bool = True,
    title: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Axes:
    """Quiver of ``score(x, t)`` (x: (M, 2), t: (M,) -> (M, 2)) on an n x n grid at time ``t``.

    normalise=True: all arrows are multiplied by one common factor so that the longest arrow is one grid
    cell (min of the x and y spacings); directions and relative lengths are kept. False: raw vectors with
    matplotlib's autoscaling. Adds exactly one Quiver to ``ax.collections``.
    """
    x0, x1, y0, y1 = _check_lim(lim, n)
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    pts = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], axis=1)).to(
        dtype=dtype, device=device
    )
    tt = torch.full((pts.shape[0],), float(t), dtype=dtype, device=device)
    with torch.no_grad():
        s = _np(score(pts, tt), "score(x, t)")
    if s.shape != (n * n, 2):
        raise ValueError(f"score(x, t) must return shape (M, 2) = {(n * n, 2)}, got {s.shape}")
    s = np.where(np.isfinite(s), s, 0.0)
    u, v = s[:, 0].reshape(gx.shape), s[:, 1].reshape(gx.shape)
    ax = _axes(ax, (5.0, 5.0))
    if normalise:
        cell = min((x1 - x0) / (n - 1), (y1 - y0) / (n - 1))
        longest = float(np.hypot(u, v).max())
        k = cell / longest if longest > 0 else 1.0
        ax.quiver(
            gx, gy, u * k, v * k, color=color, label=label, angles="xy", scale_units="xy", scale=1
        )
    else:
        ax.quiver(gx, gy, u, v, color=color, label=label)
    pad_x, pad_y = (x1 - x0) / (n - 1), (y1 - y0) / (n - 1)
    ax.set(xlim=(x0 - pad_x, x1 + pad_x), ylim=(y0 - pad_y, y1 + pad_y), aspect="equal")
    ax.set(xlabel="$x_1$", ylabel="$x_2$")
    if label is not None:
        ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    return ax


def score_fields(
    scores: Mapping[str, ScoreFn],
    times: Sequence[float],
    *,
    lim: Lim = ((-3.0, 3.0), (-3.0, 3.0)),
    n: int = 17,
    normalise: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Figure:
    """Grid of score_field panels: one row per entry of ``scores``, one column per time in ``times``.

    Panel titles "t = 0.05"; the row name is the first column's y label.
    """
    if len(scores) == 0:
        raise ValueError("scores must have at least one entry (name -> score(x, t))")
    ts = [float(t) for t in _np(times, "times").reshape(-1)]
    if len(ts) == 0:
        raise ValueError("times must have at least one entry, shape (K,)")
    rows, cols = len(scores), len(ts)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(3.0 * cols, 3.0 * rows),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    colors = plt.get_cmap("tab10")
    for i, (name, fn) in enumerate(scores.items()):
        for j, t in enumerate(ts):
            ax = axes[i, j]
            score_field(
                fn,
                t,
                ax,
                lim=lim,
                n=n,
                color=colors(i % 10),
                normalise=normalise,
                dtype=dtype,
                device=device,
            )
            ax.set_title(f"t = {t:g}")
            ax.set_ylabel(str(name) if j == 0 else "")
            if i < rows - 1:
                ax.set_xlabel("")
    return fig
