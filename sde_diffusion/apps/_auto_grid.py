"""``auto_grid=true`` for ``sde-sample``: the solver's grid tuned to this score once, then cached.

The cache key names the score: a checkpoint by its file's sha256, an exact mixture by its
parameters, plus the label and guidance options that change the score
(:func:`sde_diffusion.sampling.auto_grid.auto_grid`; README, "Fast samplers").
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ..digest import file_sha256
from ..mixture import GaussianMixture
from ..sampling.auto_grid import auto_grid, mixture_key
from ._common import UsageError, check_bool, check_int

log = logging.getLogger(__name__)


def _model_key(cfg: DictConfig, data: Any) -> str:
    if cfg.checkpoint is not None:
        base = f"checkpoint:{file_sha256(cfg.checkpoint)}:ema"
    elif isinstance(data, GaussianMixture):
        base = mixture_key(data)
    else:
        raise UsageError(f"auto_grid=true needs a checkpoint or a mixture data=, got {data!r}")

    def plain(value: Any) -> Any:
        return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value

    guided = {k: plain(cfg.get(k))
              for k in ("label", "guidance", "guidance_interval", "classifier",
                        "component_labels")}  # fmt: skip
    return base + ":" + json.dumps(guided, sort_keys=True, default=str)


def tuned_solver(
    cfg: DictConfig,
    sde: Any,
    solver: Any,
    score: Any,
    data: Any,
    eps: float,
    device: torch.device,
    progress: bool,
) -> tuple[Any, dict[str, Any]]:
    """``solver`` on its grid tuned to ``score`` (``auto_grid=true``), and what that cost;
    ``solver`` and ``{}`` unchanged when ``auto_grid`` is false."""
    if not check_bool("auto_grid", cfg.get("auto_grid", False)):
        return solver, {}
    budget = cfg.get("auto_grid_budget") or {}
    unknown = set(budget) - {"pilot", "max_evals"}
    if unknown:
        raise UsageError(
            f"auto_grid_budget has unknown keys {sorted(unknown)}; allowed: pilot, max_evals"
        )
    pilot = check_int("auto_grid_budget.pilot", budget.get("pilot", 1024), 16)
    max_evals = check_int("auto_grid_budget.max_evals", budget.get("max_evals", 800), 2)
    steps = check_int("steps", cfg.steps, 2)
    main = solver.grid_solver()  # the solver itself, or the one on its main path (restart)
    if not (dataclasses.is_dataclass(solver) and hasattr(solver, "grid")) or (
        main.equation != "ode" or main.stochastic or main.adaptive
    ):
        raise UsageError(
            f"auto_grid=true tunes a fixed-step deterministic solver's grid (unipc, "
            f"dpm_solver_*, heun_karras, ode_euler, ..., or restart's main path), got "
            f"{type(solver).__name__}"
        )
    tuned = auto_grid(sde, score, solver, steps, tuple(data.event_shape),
                      model_key=_model_key(cfg, data), eps=eps, pilot=pilot,
                      max_evals=max_evals, device=device, progress=progress,
                      batch_size=_batch(cfg))  # fmt: skip
    how = "read from the cache" if tuned.cached else f"tuned: {tuned.nfe} NFE per pilot draw"
    log.info("auto_grid: %s (%s)", how, tuned.path)
    info = {"cached": tuned.cached, "nfe_per_pilot_draw": tuned.nfe, "pilot": pilot,
            "max_evals": max_evals, "levels": list(tuned.levels), "cache": str(tuned.path)}  # fmt: skip
    return dataclasses.replace(solver, grid=tuned.grid), {"auto_grid": info}


def _batch(cfg: Any) -> int | None:
    """The run's ``batch_size`` (samples integrated at once) also chunks the tuning pilot."""
    value = cfg.get("batch_size")
    return None if value is None else check_int("batch_size", value, 1)
