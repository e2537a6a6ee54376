"""Grids of image samples (N, C, H, W), tiled into one picture per axes, for side-by-side solvers."""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._common import ArrayLike, _np


def tile_images(
    images: ArrayLike,
    *,
    nrow: int = 8,
    value_range: tuple[float, float] = (-1.0, 1.0),
    padding: int = 1,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile ``images`` (N, C, H, W), C in {1, 3}, into one array with values in [0, 1].

    Pixels are clipped to ``value_range`` and mapped linearly to [0, 1]. With cols = min(N, nrow) and
    rows = ceil(N / cols) the result has shape (rows (H + padding) + padding, cols (W + padding) + padding)
    for C = 1, with a trailing axis of 3 for C = 3; gaps are filled with ``pad_value``.
    """
    x = _np(images, "images")
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] < 1:
        raise ValueError(
            f"images must have shape (N, C, H, W) with N >= 1 and C in {{1, 3}}, got {x.shape}"
        )
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    x = (np.clip(np.nan_to_num(x, nan=lo), lo, hi) - lo) / (hi - lo)
    n, c, h, w = x.shape
    cols = min(n, nrow)
    rows = math.ceil(n / cols)
    p = padding
    grid = np.full((rows * (h + p) + p, cols * (w + p) + p, c), float(pad_value))
    for k in range(n):
        r, q = divmod(k, cols)
        top, left = p + r * (h + p), p + q * (w + p)
        grid[top : top + h, left : left + w] = x[k].transpose(1, 2, 0)
    return grid[..., 0] if c == 1 else grid


def image_grid(
    images: ArrayLike,
    ax: Axes | None = None,
    *,
    nrow: int = 8,
    value_range: tuple[float, float] = (-1.0, 1.0),
    title: str | None = None,
    padding: int = 1,
) -> Axes:
    """Show ``images`` (N, C, H, W), C in {1, 3}, as one tiled picture (see ``tile_images``), axis off.

    One ``ax.imshow`` of the tiled array (grey colour map, vmin 0, vmax 1 for C = 1).
    """
    grid = tile_images(images, nrow=nrow, value_range=value_range, padding=padding)
    if ax is None:
        h, w = grid.shape[:2]
        _, ax = plt.subplots(figsize=(min(12.0, 0.06 * w + 1), min(12.0, 0.06 * h + 1)))
    if grid.ndim == 2:
        ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def image_grids(
    groups: Mapping[str, ArrayLike],
    *,
    nrow: int = 8,
    value_range: tuple[float, float] = (-1.0, 1.0),
    padding: int = 1,
    ncols: int = 2,
) -> Figure:
    """One ``image_grid`` panel per entry of ``groups`` (e.g. one per solver), titled by its key,
    ``ncols`` panels to a row (one long row of many panels made each image tiny)."""
    if len(groups) == 0:
        raise ValueError("groups must have at least one entry (name -> images (N, C, H, W))")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be an integer >= 1, got {ncols!r}")
    k = len(groups)
    cols = min(k, ncols)
    rows = -(-k // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.0 * cols, 4.4 * rows), squeeze=False, layout="constrained"
    )
    for ax, (name, imgs) in zip(axes.flat, groups.items(), strict=False):
        image_grid(imgs, ax, nrow=nrow, value_range=value_range, title=str(name), padding=padding)
    for ax in axes.flat[k:]:
        ax.set_axis_off()
    return fig
