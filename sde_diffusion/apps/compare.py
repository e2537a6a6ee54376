"""``sde-compare``: which sampler gives the best samples for a budget of NFE and wall time?

    sde-compare 'solvers=[euler_maruyama,ode_heun,ode]' 'steps=[10,20,50]' 'sdes=[vp,ve]'
    sde-compare from_dir=multirun/sample/<date>/<time>    # summarise an sde-sample multirun
    sde-compare checkpoint=PATH label=3 guidance=2 'solvers=[unipc,dpm_solver_pp_2m]'

``label=``, ``guidance=``, ``guidance_interval=``, ``classifier=`` and ``component_labels=``
guide every run as in ``sde-sample``; the samples are scored against p(x | y) where it is known.

Writes ``results.csv`` (one row per run: sde, solver, steps, nfe, metrics, wall time, seed,
status and the reason of any failure), ``quality_vs_nfe.png`` and ``quality_vs_time.png``.
A run that fails (a refused combination, NaN) is a ``failed`` row; the sweep goes on.
"""

from __future__ import annotations

import logging
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import matplotlib
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig
from tqdm.auto import tqdm

from ..results import collect, write_csv
from ._common import (
    UsageError,
    atomic_save,
    check_bool,
    check_int,
    describe,
    resolve_device,
    resolve_dtype,
    set_threads,
)
from ._guided import guided_score, label_metrics
from ._job import (
    build,
    check_eps,
    data_for,
    explicit_data,
    load_group,
    sample_job,
    score_for,
    score_samples,
)
from ._precheck import precheck
from ._rundir import run_in_dir

log = logging.getLogger(__name__)
#: what a sweep writes: a rerun into the same directory needs overwrite=true
OUTPUTS = ("results.csv", "quality_vs_nfe.png", "quality_vs_time.png", "failure.json")


def _names(cfg: DictConfig, key: str, group: str) -> list[str]:
    value = cfg[key]
    names = list(value) if isinstance(value, ListConfig | list) else [value]
    for n in names:
        load_group(group, str(n))  # refuses unknown names with the list of known ones
    return [str(n) for n in names]


def _steps(cfg: DictConfig) -> list[int]:
    value = cfg.steps
    steps = list(value) if isinstance(value, ListConfig | list) else [value]
    return [check_int("steps", s, 1) for s in steps]


def sweep(cfg: DictConfig, out_dir: Path) -> list[dict[str, Any]]:
    """Run every (sde, solver, steps) combination; write the table and the plots."""
    set_threads(cfg.get("threads"))
    device, dtype = resolve_device(str(cfg.device)), resolve_dtype(str(cfg.dtype))
    num, seed = check_int("num_samples", cfg.num_samples, 2), check_int("seed", cfg.seed, 0)
    batch_size = check_int("batch_size", cfg.get("batch_size", num), 1)
    sdes, solvers, steps = _names(cfg, "sdes", "sde"), _names(cfg, "solvers", "solver"), _steps(cfg)
    denoise, progress = check_bool("denoise", cfg.denoise), check_bool("progress", cfg.progress)
    hc = HydraConfig.get()
    explicit = explicit_data(hc.overrides.task)
    data = data_for(cfg.checkpoint, cfg.data, explicit)  # a checkpoint: its own training data
    own = cfg.checkpoint is not None and not explicit
    data_name = "checkpoint's data" if own else str(hc.runtime.choices.get("data", "data"))
    plan = []
    for sde_name in sdes:
        for solver_name in solvers:
            solver = build(load_group("solver", solver_name), f"solver {solver_name}")
            for n in [None] if solver.adaptive else steps:
                plan.append((sde_name, solver_name, n))
    # label= and guidance options: refused here, once, rather than in every run's row
    first = build(load_group("sde", sdes[0]), f"sde {sdes[0]}")
    guided_score(cfg, cfg.checkpoint, first, data, score_for(cfg.checkpoint, first, data))
    rows: list[dict[str, Any]] = []
    for sde_name, solver_name, n in tqdm(plan, desc="runs", disable=not progress):
        start = time.perf_counter()
        row: dict[str, Any] = {"sde": sde_name, "solver": solver_name, "steps": n, "seed": seed}
        try:
            sde = build(load_group("sde", sde_name), f"sde {sde_name}")
            solver = build(load_group("solver", solver_name), f"solver {solver_name}")
            eps = check_eps(cfg.eps, sde)
            score = score_for(cfg.checkpoint, sde, data)
            score, target, guided = guided_score(cfg, cfg.checkpoint, sde, data, score)
            x, info = sample_job(
                sde,
                solver,
                data,
                score,
                steps=n,
                eps=eps,
                num_samples=num,
                seed=seed,
                device=device,
                dtype=dtype,
                denoise=denoise,
                batch_size=batch_size,
            )
            info.update(score_samples(x, target, sde, eps, seed))
            info.update(guided, **label_metrics(x, data, target, guided, sde, eps, cfg.checkpoint))
            info.update(sde_class=info["sde"], solver_class=info["solver"])
            row.update(info, sde=sde_name, solver=solver_name, data=data_name, status="ok")
        except Exception as err:  # any failure is a failed row with its reason, a KeyError too
            row.update(status="failed", error=describe(err), error_type=type(err).__name__)
            log.warning("%s / %s / steps=%s failed: %s", sde_name, solver_name, n, row["error"])
        row["job_time_s"] = time.perf_counter() - start
        rows.append(row)
        write_csv(rows, out_dir / "results.csv")  # rows carry their status: never mistaken
    _plots(rows, out_dir)
    return rows


def summarise(root: Path) -> list[dict[str, Any]]:
    """Collect the runs under ``root`` (e.g. a Hydra multirun) into the same table and plots."""
    rows = collect(root)
    if not rows:
        raise UsageError(f"from_dir={str(root)!r} holds no runs (no metrics.json or failure.json)")
    write_csv(rows, root / "results.csv")
    _plots(rows, root)
    return rows


def _plots(rows: list[dict[str, Any]], out_dir: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plot import quality_vs_nfe, quality_vs_time

    # the exact TV where the law is known; else FD on images; else sliced W2 (held-out data)
    metric = next((m for m in ("tv", "fd") if any(m in r for r in rows)), "sliced_wasserstein")
    floor = f"{metric}_floor" if any(f"{metric}_floor" in r for r in rows) else None
    for name, draw in (
        ("quality_vs_nfe.png", quality_vs_nfe),
        ("quality_vs_time.png", quality_vs_time),
    ):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        draw(rows, metric=metric, ax=ax, floor_key=floor)
        fig.tight_layout()
        atomic_save(out_dir / name, partial(fig.savefig, dpi=120, format="png"))
        plt.close(fig)


def _report(rows: list[dict[str, Any]], where: Path) -> None:
    failed = sum(r.get("status") != "ok" for r in rows)
    log.info("%d runs (%d failed); table and plots in %s", len(rows), failed, where)


def run(cfg: DictConfig, out_dir: Path) -> list[dict[str, Any]]:
    if cfg.from_dir is not None:
        root = Path(str(cfg.from_dir))
        rows = summarise(root)
        _report(rows, root)
    else:
        rows = sweep(cfg, out_dir)
        _report(rows, out_dir)
    return rows


@hydra.main(config_path="pkg://sde_diffusion.conf", config_name="compare", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    rows = run_in_dir(lambda: run(cfg, out_dir), out_dir, OUTPUTS, cfg.get("overwrite", False))
    if rows and all(r.get("status") != "ok" for r in rows):
        print(f"error: all {len(rows)} runs failed (reasons in results.csv)", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    """Console entry point of ``sde-compare``."""
    precheck(sys.argv[1:], "compare.yaml", ("data",), __doc__)
    _hydra_main()


if __name__ == "__main__":
    main()
