"""Marginal densities p_t(x) of 1-D processes as heat maps over (t, x), exact or estimated from paths."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ._common import ArrayLike, _axes, _np, _paths_1d, _times


def _xs(xs: ArrayLike) -> np.ndarray:
    x = _np(xs, "xs")
    if x.ndim != 1 or x.shape[0] < 2:
        raise ValueError(f"xs must have shape (X,) with X >= 2, got {x.shape}")
    return x


def _density(density: ArrayLike, T: int, X: int, name: str = "density") -> np.ndarray:
    d = _np(density, name)
    if d.shape != (T, X):
        raise ValueError(f"{name} shape must be (len(times), len(xs)) = {(T, X)}, got {d.shape}")
    return d


def _mesh(ax: Axes, t: np.ndarray, x: np.ndarray, d: np.ndarray, cmap: str, **kw: float | None):
    mesh = ax.pcolormesh(t, x, d.T, shading="nearest", cmap=cmap, **kw)
    ax.set(xlabel="$t$", ylabel="$x$")
    return mesh


def density_heatmap(
    times: ArrayLike,
    xs: ArrayLike,
    density: ArrayLike,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    cmap: str = "magma",
    colorbar: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Axes:
    """Heat map of p_t(x): ``density`` (T, X) on ``times`` (T,) (x axis) and ``xs`` (X,) (y axis).

    The QuadMesh holds ``density.T`` (rows = x, columns = t); colorbar labelled "$p_t(x)$".
    """
    t, x = _times(times), _xs(xs)
    d = _density(density, t.shape[0], x.shape[0])
    ax = _axes(ax)
    mesh = _mesh(ax, t, x, d, cmap, vmin=vmin, vmax=vmax)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label="$p_t(x)$")
    if title:
        ax.set_title(title)
    return ax


def empirical_density(times: ArrayLike, xs: ArrayLike, paths: ArrayLike) -> Tensor:
    """Histogram estimate (T, X), float64, of the marginals of 1-D ``paths`` (T, N) or (T, N, 1).

    Bins are centred at the uniformly spaced ``xs`` with width dx = xs[1] - xs[0]:
    p_t(x_j) ~ #{i : |x_t^i - x_j| < dx/2} / (N dx), so each row sums (times dx) to the fraction of
    samples inside [xs[0] - dx/2, xs[-1] + dx/2).
    """
    t, x = _times(times), _xs(xs)
    p = _paths_1d(paths, t.shape[0])
    dx = (x[-1] - x[0]) / (x.shape[0] - 1)  # = xs[1] - xs[0], less sensitive to float32 rounding
    if not dx > 0 or not np.allclose(np.diff(x), dx, rtol=1e-3, atol=0.0):
        raise ValueError("xs must be increasing and uniformly spaced, shape (X,)")
    T, N = p.shape
    X = x.shape[0]
    idx = np.floor((p - (x[0] - dx / 2)) / dx)
    inside = (idx >= 0) & (idx < X)  # NaN / inf compare False and are dropped
    rows = np.broadcast_to(np.arange(T)[:, None], p.shape)
    flat = rows[inside] * X + idx[inside].astype(np.int64)
    counts = np.bincount(flat, minlength=T * X).reshape(T, X)
    return torch.from_numpy(counts / (max(N, 1) * dx)).to(torch.float64)


def marginal_heatmaps(
    times: ArrayLike,
    xs: ArrayLike,
    exact: ArrayLike,
    simulated: ArrayLike,
    *,
    titles: tuple[str, str] = ("exact", "simulated"),
    cmap: str = "magma",
) -> Figure:
    """Two heat maps of p_t(x) side by side (e.g. exact Fokker-Planck vs simulated) on one colour scale."""
    t, x = _times(times), _xs(xs)
    e = _density(exact, t.shape[0], x.shape[0], "exact")
    s = _density(simulated, t.shape[0], x.shape[0], "simulated")
    if len(titles) != 2:
        raise ValueError(f"titles must have two entries, got {len(titles)}")
    finite = np.concatenate([e[np.isfinite(e)], s[np.isfinite(s)]])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True, sharey=True, layout="constrained")
    mesh = None
    for ax, d, name in zip(axes, (e, s), titles, strict=True):
        mesh = _mesh(ax, t, x, d, cmap, vmin=vmin, vmax=vmax)
        ax.set_title(name)
    fig.colorbar(mesh, ax=list(axes), label="$p_t(x)$")
    return fig
