"""Figures of samples against a known density (matplotlib; draws on a given axes or a new one)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor

from ._common import _axes, _limits

LogProb = Callable[[Tensor], Tensor]


def samples_2d(
    samples: Tensor,
    log_prob: LogProb | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    max_points: int = 5000,
    levels: int = 8,
) -> Axes:
    """Scatter of 2-D samples over the contours of an exact density (if ``log_prob`` given)."""
    ax = _axes(ax, (5.0, 5.0))
    x = samples.detach().reshape(samples.shape[0], -1).double().cpu().numpy()
    if x.shape[1] != 2:
        raise ValueError(f"samples_2d needs 2-D points, got dimension {x.shape[1]}")
    (x0, x1), (y0, y1) = _limits(x[:, 0]), _limits(x[:, 1])
    if log_prob is not None:
        gx, gy = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
        pts = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], axis=1))
        dens = log_prob(pts).exp().reshape(gx.shape).cpu().numpy()
        ax.contour(gx, gy, dens, levels=levels, cmap="viridis", linewidths=1.0)
    show = x[:max_points]
    ax.scatter(show[:, 0], show[:, 1], s=2, alpha=0.35, color="tab:red", label="samples")
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
    if title:
        ax.set_title(title)
    return ax


def samples_1d(
    samples: Tensor,
    log_prob: LogProb | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    bins: int = 100,
    density_label: str = "exact density",
) -> Axes:
    """Histogram of 1-D samples against a density curve (if ``log_prob`` given)."""
    ax = _axes(ax, (5.0, 5.0))
    x = samples.detach().reshape(-1).double().cpu().numpy()
    lo, hi = _limits(x)
    ax.hist(x, bins=bins, range=(lo, hi), density=True, alpha=0.5, color="tab:red", label="samples")
    if log_prob is not None:
        grid = np.linspace(lo, hi, 500)
        dens = log_prob(torch.from_numpy(grid)[:, None]).exp().cpu().numpy()
        ax.plot(grid, dens, color="k", lw=1.5, label=density_label)
    ax.set(xlabel="$x$", ylabel="density")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax
