"""Training figures: the loss curve of a ``train_log.csv`` (rows from ``training.read_log``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

Row = Mapping[str, Any]


def loss_curve(
    rows: Sequence[Row],
    ax: Axes | None = None,
    *,
    x_key: str = "step",
    label: str | None = None,
    reference: float | None = None,
    reference_label: str = "reference",
    logy: bool = True,
    title: str | None = None,
) -> Axes:
    """The logged training loss against ``x_key`` ("step" or "elapsed_s").

    ``rows``: dicts with ``x_key`` and ``loss`` (e.g. ``read_log(run / "train_log.csv")``; each row
    is the mean loss of one logging window). ``reference``: a horizontal line, e.g. the loss of
    the exact score, the floor of the denoising score matching loss (Vincent, 2011, Eq. 11).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    if not rows:
        raise ValueError("rows is empty: no logged losses to draw")
    try:
        pts = sorted((float(r[x_key]), float(r["loss"])) for r in rows)
    except KeyError as err:
        raise ValueError(f"every row needs {x_key!r} and 'loss'; missing {err}") from err
    if not all(math.isfinite(x) and math.isfinite(y) for x, y in pts):
        raise ValueError("the rows hold non-finite steps or losses")
    if logy and any(y <= 0 for _, y in pts):
        raise ValueError("logy=True needs positive losses; pass logy=False")
    xs, ys = zip(*pts, strict=True)
    ax.plot(xs, ys, marker="o", ms=2, lw=1.2, label=label or "training loss")
    if reference is not None:
        ax.axhline(float(reference), color="k", ls="--", lw=1, label=reference_label)
    xlabel = {"step": "optimiser step", "elapsed_s": "training time (s)"}.get(x_key, x_key)
    ax.set(xlabel=xlabel, ylabel="loss", yscale="log" if logy else "linear")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax
