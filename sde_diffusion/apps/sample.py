"""``sde-sample``: draw samples with a chosen SDE and solver; write samples, metrics and a figure.

    sde-sample sde=ve solver=pc steps=500 data=gaussian_mixture

Writes into the run directory ``samples.npz`` (array ``x``), ``samples.png`` (2-D scatter over
the exact density contours, or a 1-D histogram) and, last and atomically, ``metrics.json``.
A failed run writes ``failure.json`` with the reason instead.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import matplotlib
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ._common import (
    atomic_save,
    atomic_write_json,
    atomic_write_npz,
    check_bool,
    check_int,
    resolve_device,
    resolve_dtype,
    set_threads,
)
from ._job import build, check_eps, evaluate, sample_job, score_for, sde_config_name, sde_for
from ._precheck import precheck
from ._rundir import run_in_dir

log = logging.getLogger(__name__)
#: what a run writes: a rerun into the same directory needs overwrite=true
OUTPUTS = ("metrics.json", "failure.json", "samples.npz", "samples.png")


def run(cfg: DictConfig, out_dir: Path, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Sample as configured; write ``samples.npz``, the figure and ``metrics.json`` (last)."""
    set_threads(cfg.get("threads"))
    device = resolve_device(str(cfg.device))
    dtype = resolve_dtype(str(cfg.dtype))
    num = check_int("num_samples", cfg.num_samples, 2)
    seed = check_int("seed", cfg.seed, 0)
    denoise, progress = check_bool("denoise", cfg.denoise), check_bool("progress", cfg.progress)
    figure = check_bool("figure", cfg.figure)
    sde, solver, data = build(cfg.sde, "sde"), build(cfg.solver, "solver"), build(cfg.data, "data")
    sde = sde_for(cfg.checkpoint, sde)  # a checkpoint samples with the SDE it was trained with
    eps = check_eps(cfg.eps, sde)
    score = score_for(cfg.checkpoint, sde, data)
    x, metrics = sample_job(
        sde,
        solver,
        data,
        score,
        steps=cfg.steps,
        eps=eps,
        num_samples=num,
        seed=seed,
        device=device,
        dtype=dtype,
        denoise=denoise,
        progress=progress,
        batch_size=cfg.get("batch_size"),
    )
    atomic_write_npz(out_dir / "samples.npz", x=x.cpu().numpy())
    metrics.update(evaluate(x, data, sde, eps, seed), dtype=str(cfg.dtype))
    metrics.update(sde_class=metrics["sde"], solver_class=metrics["solver"], **(names or {}))
    if cfg.checkpoint is not None:  # the checkpoint's SDE, whatever sde= chose
        metrics["sde"] = sde_config_name(sde)
    if figure and data.dim <= 2:
        _figure(x, data.at(eps, sde), metrics, out_dir / "samples.png")
    atomic_write_json(out_dir / "metrics.json", metrics)
    log.info(
        "%s + %s: nfe=%d, %.2f s, sliced W2=%.4f%s",
        metrics["sde"],
        metrics["solver"],
        metrics["nfe"],
        metrics["wall_time_s"],
        metrics["sliced_wasserstein"],
        f", TV={metrics['tv']:.4f} (floor {metrics['tv_floor']:.4f})" if "tv" in metrics else "",
    )
    return metrics


def _figure(x: Any, target: Any, metrics: dict[str, Any], path: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import plot

    title = f"{metrics['sde']} / {metrics['solver']}, NFE={metrics['nfe']}"
    if "tv" in metrics:
        title += f"\nTV={metrics['tv']:.3f} (floor {metrics['tv_floor']:.3f})"
    fig, ax = plt.subplots(figsize=(5, 5))
    draw = plot.samples_2d if target.dim == 2 else plot.samples_1d
    draw(x.cpu().double(), log_prob=target.log_prob, ax=ax, title=title)
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, dpi=120, format="png"))
    plt.close(fig)


def _names(hc: Any) -> dict[str, str]:
    """The config names chosen for the groups (``sde=ve`` gives ``"ve"``), as sde-compare uses."""
    choices = hc.runtime.choices
    return {g: str(choices[g]) for g in ("sde", "solver", "data") if g in choices}


@hydra.main(config_path="pkg://sde_diffusion.conf", config_name="sample", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    names = _names(hc)
    context = {**names, "steps": cfg.get("steps"), "seed": cfg.get("seed")}
    multirun = hc.mode == RunMode.MULTIRUN
    overwrite = cfg.get("overwrite", False)
    run_in_dir(lambda: run(cfg, out_dir, names), out_dir, OUTPUTS, overwrite, context, multirun)


def main() -> None:
    """Console entry point of ``sde-sample``."""
    precheck(sys.argv[1:], "sample.yaml", ("sde", "solver", "data"), __doc__)
    _hydra_main()


if __name__ == "__main__":
    main()
