"""Tidy result tables: one row per run, written as CSV, collected from run directories."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .atomic import atomic_open

#: leading columns, in this order; any other keys follow alphabetically
COLUMNS = [
    "status",
    "sde",
    "solver",
    "label",
    "steps",
    "nfe",
    "tv",
    "tv_floor",
    "tv_ratio",
    "sliced_wasserstein",
    "wall_time_s",
    "seed",
    "num_samples",
    "device",
    "error",
    "run_dir",
]


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` as CSV atomically (temporary file, then rename)."""
    path = Path(path)
    keys = {k for r in rows for k in r}
    header = [c for c in COLUMNS if c in keys] + sorted(keys - set(COLUMNS))
    with atomic_open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})
    return path


def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, list | dict) else v


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Read a results table back, turning numeric cells into numbers."""
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return None if v == "" else v


def collect(root: str | Path) -> list[dict[str, Any]]:
    """One row per run directory under ``root`` holding ``metrics.json`` or ``failure.json``.

    A run with ``metrics.json`` is ``ok``; one with only ``failure.json`` is ``failed`` with
    its reason; a run directory (one with ``.hydra/``) with neither is ``incomplete``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{str(root)!r} is not a directory")
    rows = []
    for run in sorted(_run_dirs(root), key=_sort_key):
        metrics, failure = run / "metrics.json", run / "failure.json"
        if metrics.is_file():
            row = {"status": "ok", **json.loads(metrics.read_text())}
        elif failure.is_file():
            row = {"status": "failed", **json.loads(failure.read_text())}
        else:
            row = {"status": "incomplete", "error": "no metrics.json: the run did not finish"}
        row["run_dir"] = str(run.relative_to(root)) if run != root else "."
        rows.append(row)
    return rows


def _run_dirs(root: Path) -> Iterable[Path]:
    seen = set()
    for marker in ("metrics.json", "failure.json", ".hydra"):
        for p in root.rglob(marker):
            if p.parent not in seen:
                seen.add(p.parent)
                yield p.parent


def _sort_key(p: Path) -> tuple:
    return tuple(int(s) if s.isdigit() else s for s in p.parts)
