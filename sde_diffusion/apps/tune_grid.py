"""``sde-tune-grid``: tune a deterministic solver's time grid to a score model, once.

    sde-tune-grid solver=unipc steps=10 data=unequal_mixture       # exact score
    sde-tune-grid solver=unipc steps=10 checkpoint=path/to/ckpt.pt

Runs :func:`sde_diffusion.tune_grid` and writes into the run directory ``solver.yaml`` (the
solver's config with the tuned :class:`solvers.grids.TabulatedGrid`) and, last and atomically,
``tuning.json`` (levels, objective before and after, evaluations, NFE spent, wall time, and
the ``sde-sample`` overrides that use the grid). A failed run writes ``failure.json``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ..grid_tuning import tune_grid
from ._common import (
    UsageError,
    atomic_save,
    atomic_write_json,
    check_bool,
    check_int,
    resolve_device,
    resolve_dtype,
    set_threads,
)
from ._job import build, check_eps, data_for, explicit_data, score_for, sde_for
from ._precheck import precheck
from ._rundir import run_in_dir

log = logging.getLogger(__name__)
#: what a run writes: a rerun into the same directory needs overwrite=true
OUTPUTS = ("tuning.json", "solver.yaml", "failure.json")


def grid_override(solver: str, levels: tuple[float, ...]) -> list[str]:
    """The ``sde-sample`` overrides that sample with ``solver`` on a grid through ``levels``."""
    values = ",".join(repr(v) for v in levels)
    grid = f"{{_target_:solvers.grids.TabulatedGrid,levels:[{values}]}}"
    return [f"solver={solver}", "~solver.grid", f"+solver.grid={grid}"]


def target_overrides(choices: dict[str, str], overrides: Sequence[str]) -> list[str]:
    """The ``sde-sample`` overrides that name the target tuned for: its ``sde`` and ``data``
    config names and this command line's ``data.*``, ``checkpoint``, ``eps`` and ``dtype``."""
    keep = ("data.", "checkpoint=", "eps=", "dtype=", "device=")
    own_data = any(o.startswith("checkpoint=") for o in overrides) and not explicit_data(overrides)
    groups = ("sde",) if own_data else ("sde", "data")  # a checkpoint is scored on its own data
    named = [f"{g}={choices[g]}" for g in groups if g in choices]
    return named + [o for o in overrides if o.lstrip("+~").startswith(keep)]


def run(
    cfg: DictConfig,
    out_dir: Path,
    solver_name: str = "unipc",
    target: Sequence[str] = (),
    explicit: bool = False,
) -> dict[str, Any]:
    """Tune as configured; write ``solver.yaml`` and ``tuning.json`` (last).

    ``solver_name``: the config name of the solver, for the ``sde-sample`` overrides;
    ``target``: the overrides that name what was tuned for (:func:`target_overrides`), so that
    the logged ``sde-sample`` command samples the same target with the tuned grid.
    """
    set_threads(cfg.get("threads"))
    device = resolve_device(str(cfg.device))
    dtype = resolve_dtype(str(cfg.dtype))
    steps = check_int("steps", cfg.steps, 2)
    pilot = check_int("pilot", cfg.pilot, 16)
    sde, solver = build(cfg.sde, "sde"), build(cfg.solver, "solver")
    data = data_for(cfg.checkpoint, cfg.data, explicit)  # a checkpoint: its own data's shape
    sde = sde_for(cfg.checkpoint, sde)  # a checkpoint is tuned with the SDE it was trained with
    score = score_for(cfg.checkpoint, sde, data)
    eps = check_eps(cfg.eps, sde)
    if solver.stochastic or solver.adaptive or solver.equation != "ode":
        raise UsageError(
            f"solver={type(solver).__name__} cannot be tuned: sde-tune-grid tunes fixed-step "
            "deterministic solvers (unipc, dpm_solver_pp_2m, dpm_solver_pp_3m, dpm_solver_2, "
            "dpm_solver_3, heun_karras, ode_euler, ode_heun, ode_rk4)"
        )
    start = time.perf_counter()
    tuned = tune_grid(
        sde,
        score,
        solver,
        steps,
        (pilot, *data.event_shape),
        eps=eps,
        reference_steps=check_int("reference_steps", cfg.reference_steps, 1),
        trim=cfg.trim,
        weight=str(cfg.weight),
        max_evals=check_int("max_evals", cfg.max_evals, 2),
        seed=check_int("seed", cfg.seed, 0),
        dtype=dtype,
        device=device,
        progress=check_bool("progress", cfg.progress),
    )
    wall = time.perf_counter() - start
    solver_cfg = OmegaConf.to_container(cfg.solver, resolve=True)
    solver_cfg["grid"] = {"_target_": "solvers.grids.TabulatedGrid", "levels": list(tuned.levels)}
    text = OmegaConf.to_yaml(OmegaConf.create(solver_cfg))
    atomic_save(out_dir / "solver.yaml", lambda f: f.write(text), "w")
    record = {
        "sde": type(sde).__name__,
        "solver": type(solver).__name__,
        "steps": steps,
        "eps": eps,
        "levels": list(tuned.levels),
        "objective": tuned.objective,
        "initial_objective": tuned.initial_objective,
        "evaluations": tuned.evaluations,
        "nfe_per_pilot_sample": tuned.nfe,
        "pilot": pilot,
        "wall_time_s": wall,
        "sample_overrides": [*grid_override(solver_name, tuned.levels), *target],
    }
    atomic_write_json(out_dir / "tuning.json", record)
    log.info(
        "%s + %s, %d steps: objective %.3g -> %.3g (%d evaluations, %d NFE per pilot draw, "
        "%.1f s); sample with: sde-sample steps=%d %s",
        record["sde"],
        record["solver"],
        steps,
        tuned.initial_objective,
        tuned.objective,
        tuned.evaluations,
        tuned.nfe,
        wall,
        steps,
        " ".join(f"'{o}'" for o in record["sample_overrides"]),
    )
    return record


@hydra.main(config_path="pkg://sde_diffusion.conf", config_name="tune_grid", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    context = {g: str(hc.runtime.choices[g]) for g in ("sde", "solver", "data")}
    target = target_overrides(context, list(hc.overrides.task))
    explicit = explicit_data(hc.overrides.task)
    multirun = hc.mode == RunMode.MULTIRUN
    run_in_dir(
        lambda: run(cfg, out_dir, context["solver"], target, explicit),
        out_dir,
        OUTPUTS,
        cfg.get("overwrite", False),
        context,
        multirun,
    )


def main() -> None:
    """Console entry point of ``sde-tune-grid``."""
    precheck(sys.argv[1:], "tune_grid.yaml", ("sde", "solver", "data"), __doc__)
    _hydra_main()


if __name__ == "__main__":
    main()
