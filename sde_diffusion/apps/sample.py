"""``sde-sample``: draw samples with a chosen SDE and solver; write samples, metrics and a figure.

    sde-sample sde=ve solver=pc steps=500 data=gaussian_mixture

Writes into the run directory ``samples.npz`` (array ``x``), ``samples.png`` (2-D scatter over
the exact density contours, or a 1-D histogram) and, last and atomically, ``metrics.json``.
A failed run writes ``failure.json`` with the reason instead.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
import matplotlib
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ..training.distributed import cleanup_distributed, init_distributed
from ._auto_grid import tuned_solver
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
from ._guided import guided_score, label_metrics
from ._job import (
    build,
    check_eps,
    data_for,
    explicit_data,
    gather_shards,
    sample_job,
    score_for,
    score_samples,
    sde_config_name,
    sde_for,
)
from ._precheck import precheck
from ._reference import HeldOut
from ._rundir import run_in_dir

log = logging.getLogger(__name__)
#: what a run writes: a rerun into the same directory needs overwrite=true
OUTPUTS = ("metrics.json", "failure.json", "samples.npz", "samples.png")


def run(
    cfg: DictConfig,
    out_dir: Path,
    names: dict[str, str] | None = None,
    explicit: bool = False,
) -> dict[str, Any]:
    """Sample as configured; write ``samples.npz``, the figure and ``metrics.json`` (last).

    With a checkpoint, the samples are scored against the data it was trained on unless the
    command line chose ``data`` (``explicit``)."""
    set_threads(cfg.get("threads"))
    procs, device = init_distributed(resolve_device(str(cfg.device)))  # torchrun: shards
    dtype = resolve_dtype(str(cfg.dtype))
    num = check_int("num_samples", cfg.num_samples, 2)
    seed = check_int("seed", cfg.seed, 0)
    denoise, progress = check_bool("denoise", cfg.denoise), check_bool("progress", cfg.progress)
    figure = check_bool("figure", cfg.figure)
    sde, solver = build(cfg.sde, "sde"), build(cfg.solver, "solver")
    data = data_for(cfg.checkpoint, cfg.data, explicit)
    sde = sde_for(cfg.checkpoint, sde)  # a checkpoint samples with the SDE it was trained with
    eps = check_eps(cfg.eps, sde)
    score = score_for(cfg.checkpoint, sde, data)
    score, target, guided = guided_score(cfg, cfg.checkpoint, sde, data, score)  # label=, guidance=
    solver, tuning = tuned_solver(cfg, sde, solver, score, data, eps, device, progress)
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
        shard=(procs.rank, procs.world_size),
    )
    x = gather_shards(x, metrics, procs.world_size)
    if x is None:  # not rank 0: its shard went to rank 0, which scores and writes
        return metrics
    units = getattr(data, "to_data", None)  # array data: back to the data's units
    atomic_write_npz(out_dir / "samples.npz", x=(units(x) if units else x).cpu().numpy())
    metrics.update(score_samples(x, target, sde, eps, seed), dtype=str(cfg.dtype))
    metrics.update(tuning)
    metrics.update(guided, **label_metrics(x, data, target, guided, sde, eps, cfg.checkpoint))
    metrics.update(sde_class=metrics["sde"], solver_class=metrics["solver"], **(names or {}))
    if cfg.checkpoint is not None:  # the checkpoint's SDE, whatever sde= chose
        metrics["sde"] = sde_config_name(sde)
    if figure and isinstance(data, HeldOut):
        held_out_figure(x, data, metrics, out_dir / "samples.png")
    elif figure and data.dim <= 2:
        _figure(x, target.at(eps, sde), metrics, out_dir / "samples.png")
    atomic_write_json(out_dir / "metrics.json", metrics)
    log.info(
        "%s + %s: nfe=%d, %.2f s, sliced W2=%.4f%s%s",
        metrics["sde"],
        metrics["solver"],
        metrics["nfe"],
        metrics["wall_time_s"],
        metrics["sliced_wasserstein"],
        f", TV={metrics['tv']:.4f} (floor {metrics['tv_floor']:.4f})" if "tv" in metrics else "",
        f" (floor {metrics['sliced_wasserstein_floor']:.4f}), MMD^2={metrics['mmd']:.2e} "
        f"(floor {metrics['mmd_floor']:.2e}) against {metrics['reference']}"
        + (f"; FD={metrics['fd']:.3f} (floor {metrics['fd_floor']:.3f})" if "fd" in metrics else "")
        if "mmd" in metrics
        else "",
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


def held_out_figure(x: Any, data: HeldOut, metrics: dict[str, Any], path: Path) -> None:
    """Samples beside the held-out data: a scatter over it (2-D), histograms (1-D) or two
    image grids (images, mapped to [0, 1] by the data set's scaler)."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import plot

    title = (
        f"{metrics['sde']} / {metrics['solver']}, NFE={metrics['nfe']}\n"
        f"SW={metrics['sliced_wasserstein']:.3g} (floor {metrics['sliced_wasserstein_floor']:.3g})"
    )
    units = data.to_data or (lambda v: v)
    x, ref = units(x.detach().cpu().float()), units(data.held_out.float())
    if x.ndim == 2 and x.shape[1] <= 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        if x.shape[1] == 2:
            ax.scatter(ref[:5000, 0].numpy(), ref[:5000, 1].numpy(), s=2, alpha=0.2, color="tab:gray",
                       label="held-out data")  # fmt: skip
            plot.samples_2d(x, ax=ax, title=title)
            ax.legend(loc="upper right", markerscale=4)
        else:
            ax.hist(ref[:, 0].numpy(), bins=80, density=True, alpha=0.4, label="held-out data")
            plot.samples_1d(x, ax=ax, title=title)
    elif x.ndim == 4:
        unit = data.to_unit or (lambda v: ((v + 1) / 2).clamp(0, 1))
        k = min(64, len(x), len(ref))
        fig = plot.image_grids(
            {f"samples ({title.splitlines()[0]})": unit(x[:k]), "held-out data": unit(ref[:k])},
            value_range=(0.0, 1.0),
        )
    else:
        return  # flat vectors of more than 2 dimensions: no picture says more than the metrics
    if fig.get_layout_engine() is None:
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
    explicit = explicit_data(hc.overrides.task)
    if cfg.get("checkpoint") is not None and not explicit:
        names.pop("data", None)  # not the default data= config: the checkpoint's own data
    job = lambda: run(cfg, out_dir, names, explicit)  # noqa: E731
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 holds the lock
    try:
        run_in_dir(job, out_dir, OUTPUTS, overwrite, context, multirun, lock=rank0)
    finally:
        cleanup_distributed()


def main() -> None:
    """Console entry point of ``sde-sample``."""
    precheck(sys.argv[1:], "sample.yaml", ("sde", "solver", "data"), __doc__)
    _hydra_main()


if __name__ == "__main__":
    main()
