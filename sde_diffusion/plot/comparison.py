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


#: full names of the metrics the apps record, for axis labels
METRIC_NAMES = {
    "tv": "total variation to the exact law",
    "tv_ratio": "TV / its noise floor (1 = the floor)",
    "sliced_wasserstein": "sliced Wasserstein-2 distance",
    "fd": "Fréchet distance (digits features)",
    "nll": "negative log-likelihood (nats)",
    "bpd": "bits per dimension",
}
_MARKERS = "osD^vP*Xph<>"
_STYLES = ("-", "--", "-.", ":")


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
    for i, (label, pts) in enumerate(series.items()):
        xs, ys = zip(*pts, strict=True)
        # Distinct markers and dashes: curves that coincide (torchsde's Euler-Maruyama on ours)
        # stay visible; a single point (an adaptive solver) is drawn large, above the floor line.
        one = len(pts) == 1
        ax.plot(
            xs, ys, marker=_MARKERS[i % len(_MARKERS)], ms=11 if one else 9 - 2 * (i % 3),
            ls=_STYLES[i % len(_STYLES)], mfc="none" if i % 2 else None, label=label, zorder=3,
        )  # fmt: skip
    if metric == "tv_ratio":
        ax.axhline(1.0, color="k", ls="--", lw=1, label="noise floor (= 1)", zorder=1)
    else:
        floors = [
            float(r[floor_key])
            for r in rows
            if floor_key and r.get(floor_key) not in (None, "") and r.get("status", "ok") == "ok"
        ]
        if floors:
            floor = sum(floors) / len(floors)
            ax.axhline(floor, color="k", ls="--", lw=1, label="noise floor", zorder=1)
    name = METRIC_NAMES.get(metric, metric.replace("_", " "))
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=name)
    if not ax.get_title():
        ax.set_title(f"{name} against {xlabel}", fontsize=9)
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
