"""Animations of a process over time: 2-D point clouds (scatter) or 1-D histograms, one frame per time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.animation import FuncAnimation, PillowWriter
from torch import Tensor

from ._common import ArrayLike, _limits, _np, _paths_any, _times

LogProbT = Callable[[Tensor, Tensor], Tensor]


def _exact(log_prob: LogProbT, pts: np.ndarray, t: float) -> np.ndarray:
    x = torch.from_numpy(pts)
    with torch.no_grad():
        lp = log_prob(x, torch.full((x.shape[0],), t, dtype=x.dtype))
    return np.exp(_np(lp, "log_prob(x, t)").reshape(-1))


def animate_paths(
    times: ArrayLike,
    states: ArrayLike,
    path: str | Path | None = None,
    *,
    kind: str = "auto",
    fps: int = 12,
    lim: Any = None,
    log_prob: LogProbT | None = None,
    title: str | None = None,
    bins: int = 60,
    max_points: int = 2000,
) -> FuncAnimation:
    """Animate ``states`` over ``times`` (T,): one frame per time, titled "t = ...".

    states (T, N, 2): scatter per frame (kind "scatter"), with contours of exp(log_prob(x, t)) if given;
    lim = ((xmin, xmax), (ymin, ymax)). states (T, N) or (T, N, 1): histogram density per frame (kind
    "hist"), with the curve exp(log_prob(x, t)), x of shape (M, 1), if given; lim = (xmin, xmax).
    kind "auto" picks by the last dimension. If ``path`` is given the animation is also written as a
    GIF with PillowWriter(fps=fps). Returns the FuncAnimation (its figure stays open).
    """
    if kind not in ("auto", "scatter", "hist"):
        raise ValueError(f"kind must be one of 'auto', 'scatter', 'hist', got {kind!r}")
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    t = _times(times)
    s = _paths_any(states, t.shape[0], "states")
    dim = s.shape[2]
    if kind == "auto":
        kind = "scatter" if dim == 2 else "hist"
    if (kind == "scatter") != (dim == 2):
        need = "(T, N, 2)" if kind == "scatter" else "(T, N) or (T, N, 1)"
        raise ValueError(f"kind={kind!r} needs states of shape {need}, got {s.shape}")
    prefix = f"{title}: " if title else ""
    fig, ax = plt.subplots(figsize=(5.0, 5.0) if dim == 2 else (6.0, 4.0))
    if kind == "scatter":
        update = _scatter(ax, t, s, lim, log_prob, max_points)
    else:
        update = _hist(ax, t, s[..., 0], lim, log_prob, bins)

    def frame(i: int) -> list[Any]:
        artists = update(i)
        ax.set_title(f"{prefix}t = {t[i]:.3f}")
        return artists

    frame(0)
    anim = FuncAnimation(fig, frame, frames=t.shape[0], interval=1000.0 / fps, blit=False)
    if path is not None:
        anim.save(str(path), writer=PillowWriter(fps=fps))
    return anim


def _scatter(ax, t, s, lim, log_prob, max_points) -> Callable[[int], list[Any]]:
    if lim is None:
        lim = (_limits(s[..., 0], pad=0.1), _limits(s[..., 1], pad=0.1))
    try:
        (x0, x1), (y0, y1) = lim
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"lim must be ((xmin, xmax), (ymin, ymax)) for 2-D states, got {lim!r}"
        ) from err
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    pts = s[:, :max_points]
    sc = ax.scatter(pts[0, :, 0], pts[0, :, 1], s=3, alpha=0.5, color="tab:red", zorder=2)
    grid = None
    if log_prob is not None:
        gx, gy = np.meshgrid(np.linspace(x0, x1, 80), np.linspace(y0, y1, 80))
        grid = (gx, gy, np.stack([gx.ravel(), gy.ravel()], axis=1))
    holder: dict[str, Any] = {"cs": None}

    def update(i: int) -> list[Any]:
        sc.set_offsets(pts[i])
        if grid is not None:
            if holder["cs"] is not None:
                holder["cs"].remove()
            dens = _exact(log_prob, grid[2], float(t[i])).reshape(grid[0].shape)
            holder["cs"] = ax.contour(
                grid[0], grid[1], dens, levels=8, cmap="viridis", linewidths=0.8
            )
        return [sc]

    return update


def _hist(ax, t, s, lim, log_prob, bins) -> Callable[[int], list[Any]]:
    if lim is None:
        lim = _limits(s, pad=0.1)
    try:
        x0, x1 = (float(v) for v in lim)
    except (TypeError, ValueError) as err:
        raise ValueError(f"lim must be (xmin, xmax) for 1-D states, got {lim!r}") from err
    edges = np.linspace(x0, x1, bins + 1)
    heights = np.stack([np.histogram(row, bins=edges)[0] for row in s]) / (
        s.shape[1] * (edges[1] - edges[0])
    )
    xs = np.linspace(x0, x1, 400)
    exact = None
    if log_prob is not None:
        exact = np.stack([_exact(log_prob, xs[:, None], float(ti)) for ti in t])
    top = max(float(heights.max()), float(exact.max()) if exact is not None else 0.0)
    ax.set(xlim=(x0, x1), ylim=(0.0, 1.1 * top if top > 0 else 1.0), xlabel="$x$", ylabel="density")
    step = ax.stairs(heights[0], edges, fill=True, alpha=0.5, color="tab:red", label="samples")
    line = None
    if exact is not None:
        (line,) = ax.plot(xs, exact[0], color="k", lw=1.5, label="exact density")
        ax.legend(loc="upper right")

    def update(i: int) -> list[Any]:
        step.set_data(heights[i])
        if line is not None:
            line.set_ydata(exact[i])
            return [step, line]
        return [step]

    return update
