"""A grid tuned to one score model on first use, then cached: ``tune_grid`` made automatic.

The first call for a (model, SDE, solver, steps, eps, event shape, budget) runs
:func:`sde_diffusion.tune_grid` and writes the tuned noise levels to a small JSON file named
by a digest of all of these; later calls read it back (plain numbers, rebuilt as a
:class:`solvers.grids.TabulatedGrid`, whose checks refuse a non-grid) and cost nothing. The
budget is stated in score evaluations per pilot draw, reference + weights + search:

    cost = pilot * (reference_steps + 1 + D' + max_evals * steps),  D' = min(D, 8 probes above 128)

The defaults (pilot 1,024, 800 objective evaluations, 400 reference steps: 8,403 NFE per draw
at 10 steps) were measured on random mixtures never tuned on (README, "Fast samplers").
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from solvers.base import Solver
from solvers.grids import TabulatedGrid

from .. import cache_root
from ..atomic import atomic_open
from ..digest import tensor_sha256
from ..grid_tuning import tune_grid
from ..mixture import GaussianMixture
from ..reverse import ScoreFn
from ..sde.base import SDE

log = logging.getLogger(__name__)

FORMAT = 1  #: the cache file's layout version; another version is a miss


@dataclass(frozen=True)
class AutoGrid:
    """A tuned grid and where it came from: ``cached`` (read back) or tuned now at ``nfe``
    score evaluations per pilot draw (0 when cached); ``path``: its cache file."""

    grid: TabulatedGrid
    levels: tuple[float, ...]
    cached: bool
    nfe: int
    path: Path


def default_cache_dir() -> Path:
    """``$SDE_DIFFUSION_CACHE/grids``, else ``$XDG_CACHE_HOME/sde-diffusion/grids``, else
    ``~/.cache/sde-diffusion/grids``."""
    return cache_root.cache_dir("grids")


def mixture_key(mixture: GaussianMixture) -> str:
    """The cache key of an exact-score mixture: the sha256 of its parameters in float64."""
    params = (mixture.weights, mixture.means, mixture.component_covs())
    return "mixture:" + tensor_sha256(*(p.to(torch.float64) for p in params))


def _positive_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _read(path: Path, key: str) -> tuple[float, ...] | None:
    """The cached levels, or None if the file is absent, unreadable or for another key."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT or data.get("key") != key:
            return None
        levels = data["levels"]
        if not isinstance(levels, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels
        ):
            raise ValueError("levels is not a list of numbers")
        TabulatedGrid(tuple(levels))  # its checks: >= 2 finite, positive, decreasing
        return tuple(float(v) for v in levels)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("ignoring the unreadable grid cache %s (%s); tuning again", path, err)
        return None


def auto_grid(
    sde: SDE,
    score_fn: ScoreFn,
    solver: Solver,
    steps: int,
    event_shape: Sequence[int],
    *,
    model_key: str,
    eps: float | None = None,
    pilot: int = 1024,
    max_evals: int = 800,
    reference_steps: int = 400,
    cache_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    progress: bool = False,
    batch_size: int | None = None,
) -> AutoGrid:
    """The ``steps``-step grid of ``solver`` tuned to ``score_fn``, from the cache if there.

    Args:
        sde, score_fn, solver, steps, eps: as for :func:`sde_diffusion.tune_grid`.
        event_shape: one sample's shape; the pilot batch is ``(pilot, *event_shape)``.
        model_key: names the score model, e.g. a checkpoint's sha256 (plus "ema") or
            :func:`mixture_key` of a mixture. A different model must have a
            different key: the cache cannot tell two models apart otherwise.
        pilot, max_evals, reference_steps: the tuning budget (module docstring).
        cache_dir: where the JSON files live; default :func:`default_cache_dir`.
        batch_size: pilot samples integrated at once (memory only: not in the key).
    """
    if not isinstance(model_key, str) or not model_key:
        raise ValueError(f"model_key must be a non-empty string, got {model_key!r}")
    steps = _positive_int("steps", steps, 2)
    pilot = _positive_int("pilot", pilot, 2)
    max_evals = _positive_int("max_evals", max_evals, 1)
    reference_steps = _positive_int("reference_steps", reference_steps, steps + 1)
    eps = sde.eps if eps is None else eps
    event = tuple(int(d) for d in event_shape)
    described = {
        "model": model_key,
        "sde": repr(sde),
        "solver": repr(solver.grid_solver()),  # what is tuned: Restart shares UniPC's grid
        "steps": steps,
        "eps": float(eps),
        "event_shape": list(event),
        "pilot": pilot,
        "max_evals": max_evals,
        "reference_steps": reference_steps,
        "dtype": str(dtype),
    }
    key = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{key[:32]}.json"
    levels = _read(path, key)
    if levels is not None:
        return AutoGrid(TabulatedGrid(levels), levels, True, 0, path)
    tuned = tune_grid(sde, score_fn, solver, steps, (pilot, *event), eps=eps,
                      reference_steps=reference_steps, max_evals=max_evals, dtype=dtype,
                      device=device, progress=progress, batch_size=batch_size)  # fmt: skip
    record = {
        "format": FORMAT,
        "key": key,
        "described": described,
        "levels": list(tuned.levels),
        "objective": tuned.objective if math.isfinite(tuned.objective) else None,
        "initial_objective": tuned.initial_objective,
        "nfe_per_pilot_draw": tuned.nfe,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w") as f:
            json.dump(record, f, indent=1)
    except OSError as err:  # a read-only cache costs a retune next time, not the result
        log.warning("could not write the grid cache %s (%s)", path, err)
    return AutoGrid(tuned.grid, tuned.levels, False, tuned.nfe, path)
