"""Sampler comparison figures: quality against NFE and against wall time, from a results table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

Row = Mapping[str, Any]


def _series(rows: Sequence[Row], x_key: str, metric: str) -> dict[str, list[tuple[float, float]]]:
    """Group successful rows by (sde, solver) label into sorted (x, metric) points."""
    out: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r.get("status", "ok") != "ok":
            continue
        x, y = r.get(x_key), r.get(metric)
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            continue
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        label = f"{r.get('sde', '?')} / {r.get('label') or r.get('solver', '?')}"
        out.setdefault(label, []).append((x, y))
    return {k: sorted(v) for k, v in sorted(out.items())}


def _draw(
    rows: Sequence[Row],
    x_key: str,
    metric: str,
    ax: Axes | None,
    xlabel: str,
    floor_key: str | None,
) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    series = _series(rows, x_key, metric)
    for label, pts in series.items():
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o", ms=3, label=label)
    floors = [
        float(r[floor_key])
        for r in rows
        if floor_key and r.get(floor_key) not in (None, "") and r.get("status", "ok") == "ok"
    ]
    if floors:
        ax.axhline(sum(floors) / len(floors), color="k", ls="--", lw=1, label="noise floor")
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=metric)
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    return ax


def quality_vs_nfe(
    rows: Sequence[Row],
    metric: str = "tv",
    ax: Axes | None = None,
    floor_key: str | None = "tv_floor",
) -> Axes:
    """One line per (sde, solver): ``metric`` against the number of score evaluations."""
    return _draw(rows, "nfe", metric, ax, "score evaluations (NFE)", floor_key)


def quality_vs_time(
    rows: Sequence[Row],
    metric: str = "tv",
    ax: Axes | None = None,
    floor_key: str | None = "tv_floor",
) -> Axes:
    """One line per (sde, solver): ``metric`` against the sampling wall time in seconds."""
    return _draw(rows, "wall_time_s", metric, ax, "wall time (s)", floor_key)
