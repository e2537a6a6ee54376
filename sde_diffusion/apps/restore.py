"""``sde-restore``: solve an inverse problem y = A x + sigma_y n with a diffusion prior.

    sde-restore operator=inpaint mask=right method=smc data=gaussian_mixture
    sde-restore operator=superres factor=2 method=pigdm checkpoint=PATH

Operators: inpaint (mask=), superres (factor=), colourise, denoise; methods: conf/method/.
The prior is a trained checkpoint (loaded through the allow-list) or an analytic mixture of
conf/data (exact score; the exact posterior is then known). The observation is read from
``observation=`` (.npz or an image file) or made from a data sample (``seed``). Writes into
the run directory ``restore.npz`` (reconstructions ``x``, observation ``y``, ``x_true`` when
made from a sample, ``posterior_mean`` where known), ``restore.png`` and, last and
atomically, ``metrics.json``; a failed run writes ``failure.json`` instead.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import matplotlib
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ..inverse import posterior
from ..inverse.masks import make_mask
from ..metrics.total_variation import tv_to_mixture
from ._common import (
    UsageError,
    atomic_save,
    atomic_write_json,
    atomic_write_npz,
    check_bool,
    check_int,
    resolve_device,
    resolve_dtype,
    set_threads,
)
from ._config import build
from ._job import check_eps
from ._precheck import precheck
from ._rundir import run_in_dir

log = logging.getLogger(__name__)
OUTPUTS = ("metrics.json", "failure.json", "restore.npz", "restore.png")
GROUPS = ("sde", "solver", "data", "operator", "method")


def _prior(cfg: DictConfig) -> tuple[Any, Any, Any, tuple[int, ...], Any]:
    """(sde, score, exact prior or None, event shape, the data to observe a sample of)."""
    if cfg.checkpoint is None:
        data = build(cfg.data, "data")
        sde = build(cfg.sde, "sde")
        return sde, data.score_fn(sde), data, tuple(data.event_shape), data
    from ..training import load_trained

    trained = load_trained(cfg.checkpoint)

    def source() -> Any:
        from ._reference import checkpoint_data

        return checkpoint_data(trained.config, trained.data_transform)

    return trained.sde, trained.score_fn(), None, tuple(trained.data_shape), source


def _operator(cfg: DictConfig, event_shape: tuple[int, ...], seed: int) -> Any:
    node, extra = cfg.operator, {}
    if "mask" in node and node.mask is None:
        extra["mask"] = make_mask(str(cfg.mask), event_shape, seed)
    if "channels" in node and node.channels is None:
        extra["channels"] = event_shape[0]
    op = build(node, "operator", **extra)
    op.out_shape(
        event_shape
    )  # refuses what does not fit the events (a factor, a mask), in one line
    return op


def _read_observation(path: str, obs_shape: tuple[int, ...]) -> torch.Tensor:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"observation={path!r}: no such file")
    if p.suffix.lower() == ".npz":
        with np.load(p, allow_pickle=False) as f:
            keys = list(f.keys())
            if "y" not in keys and len(keys) != 1:
                raise UsageError(f"observation={path!r} holds {keys}: name the array 'y'")
            y = np.asarray(f["y" if "y" in keys else keys[0]], dtype=np.float64)
    else:
        from PIL import Image

        try:
            img = Image.open(p).convert("RGB" if obs_shape[0] == 3 else "L")
        except OSError as err:
            raise UsageError(f"observation={path!r} is not a readable image or .npz") from err
        y = np.asarray(img, dtype=np.float64) / 127.5 - 1.0  # [0, 255] -> [-1, 1]
        y = y.transpose(2, 0, 1) if y.ndim == 3 else y[None]
    y = torch.from_numpy(y)
    if tuple(y.shape) == (1, *obs_shape):
        y = y[0]
    if tuple(y.shape) != obs_shape:
        raise UsageError(
            f"observation={path!r} has shape {tuple(y.shape)}, but the operator observes {obs_shape}"
        )
    return y


def _observation(cfg: DictConfig, op: Any, data: Any, shape: tuple[int, ...], seed: int) -> tuple:
    """(y, x_true or None): read from ``observation=``, or A x + sigma_y n for a data sample."""
    if cfg.observation is not None:
        return _read_observation(str(cfg.observation), op.out_shape(shape)), None
    data = data() if callable(data) else data  # a checkpoint's data, read only when needed
    g = torch.Generator().manual_seed(seed)
    held = getattr(data, "held_out", None)
    if held is not None:
        x = held[seed % len(held)][None].to(torch.float64)
    else:
        x = data.sample(1, g, dtype=torch.float64)
    return op.observe(x, g)[0], x[0]


def run(cfg: DictConfig, out_dir: Path, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Restore as configured; write ``restore.npz``, the figure and ``metrics.json`` (last)."""
    set_threads(cfg.get("threads"))
    device, dtype = resolve_device(str(cfg.device)), resolve_dtype(str(cfg.dtype))
    num, seed = check_int("num_samples", cfg.num_samples, 1), check_int("seed", cfg.seed, 0)
    steps = check_int("steps", cfg.steps, 1)
    progress, figure = check_bool("progress", cfg.progress), check_bool("figure", cfg.figure)
    sde, score, prior, shape, data = _prior(cfg)
    op = _operator(cfg, shape, seed)
    method = build(cfg.method, "method")
    solver = None if method.supports == "own" else build(cfg.solver, "solver")
    eps = check_eps(cfg.eps, sde)
    y, x_true = _observation(cfg, op, data, shape, seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    start = time.perf_counter()
    res = method.sample(
        sde, score, op, y, (num, *shape), solver=solver, steps=steps, eps=eps,
        generator=gen, device=device, dtype=dtype, progress=progress,
    )  # fmt: skip
    wall = time.perf_counter() - start
    x = res.x.detach().cpu().double()
    arrays: dict[str, Any] = {"x": x.numpy(), "y": y.numpy()}
    names = {k: v for k, v in (names or {}).items() if solver is not None or k != "solver"}
    metrics: dict[str, Any] = {
        **names,
        "method_class": repr(method),
        "operator_class": repr(op),
        "solver_class": None if solver is None else type(solver).__name__,
        "sde_class": type(sde).__name__,
        "nfe": res.nfe,
        "steps": steps,
        "num_samples": num,
        "seed": seed,
        "wall_time_s": wall,
        "observation": str(cfg.observation) if cfg.observation is not None else "a data sample",
        "checkpoint": None if cfg.checkpoint is None else str(cfg.checkpoint),
    }
    mean = None
    if prior is not None:  # the exact posterior of the mixture prior
        post = posterior(prior, op, y)
        mean = post.mean().reshape(shape).double()
        arrays["posterior_mean"] = mean.numpy()
        spread = torch.diagonal(post.covariance().double()).mean().sqrt()
        metrics["posterior_mean_rms_error"] = float((x.mean(0) - mean).pow(2).mean().sqrt())
        metrics["posterior_rms_std"] = float(spread)
        if x[0].numel() <= 2 and op.sigma_y > 0:  # a proper density: the histogram TV
            tv = tv_to_mixture(x.reshape(num, -1), post.at(eps, sde), bins=32)
            metrics.update(tv=tv.tv, tv_floor=tv.floor, tv_ratio=tv.ratio)
    if x_true is not None:
        arrays["x_true"] = x_true.numpy()
    atomic_write_npz(out_dir / "restore.npz", **arrays)
    if figure:
        _figure(x, y, x_true, mean, prior, op, metrics, out_dir / "restore.png")
    atomic_write_json(out_dir / "metrics.json", metrics)
    log.info(
        "%s, %s: nfe=%d, %.2f s%s", metrics["method_class"], metrics["operator_class"], res.nfe,
        wall, "" if mean is None else
        f", posterior-mean RMS error {metrics['posterior_mean_rms_error']:.4f} (posterior RMS "
        f"std {metrics['posterior_rms_std']:.4f})",
    )  # fmt: skip
    return metrics


def _figure(x, y, x_true, mean, prior, op, metrics: dict[str, Any], path: Path) -> None:
    """2-D: reconstructions over the prior's contours; images: grids; otherwise no figure."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import plot

    title = f"{metrics['method_class']}\n{metrics['operator_class']}, NFE={metrics['nfe']}"
    if x.ndim == 2 and x.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        plot.samples_2d(x, ax=ax, title=title)
        ref = x if prior is None else torch.cat([x, prior.sample(2000, dtype=torch.float64)])
        lo, hi = ref.quantile(0.002, dim=0) - 0.3, ref.quantile(0.998, dim=0) + 0.3
        if prior is not None:  # the prior's density, under the reconstructions
            gx, gy = torch.meshgrid(
                *(torch.linspace(a, b, 150) for a, b in zip(lo, hi, strict=True)), indexing="xy"
            )
            dens = prior.log_prob(torch.stack([gx, gy], -1).reshape(-1, 2).double()).exp()
            ax.contour(gx, gy, dens.reshape(gx.shape), levels=8, cmap="Greys", linewidths=0.8)
        ax.set(xlim=(float(lo[0]), float(hi[0])), ylim=(float(lo[1]), float(hi[1])))
        for point, label, marker in ((x_true, "truth", "*"), (mean, "posterior mean", "X")):
            if point is not None:
                ax.scatter([float(point[0])], [float(point[1])], marker=marker, s=120,
                           color="black", label=label)  # fmt: skip
        ax.legend(loc="upper right", fontsize=8)
    elif x.ndim == 4:
        groups = {"observation (A^+ y)": op.A_dagger(y[None].double())}
        groups["reconstructions"] = x[:16]
        if mean is not None:
            groups["exact posterior mean"] = mean[None]
        if x_true is not None:
            groups["truth"] = x_true[None]
        fig = plot.image_grids(
            {k: v.clamp(-1, 1) for k, v in groups.items()}, nrow=4, ncols=len(groups)
        )
        fig.suptitle(title.replace("\n", ", "), fontsize=9)
    else:
        return
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, dpi=120, format="png"))
    plt.close(fig)


def _names(hc: Any) -> dict[str, str]:
    choices = hc.runtime.choices
    return {g: str(choices[g]) for g in GROUPS if g in choices}


@hydra.main(config_path="pkg://sde_diffusion.conf", config_name="restore", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    names = _names(hc)
    context = {**names, "seed": cfg.get("seed")}
    multirun = hc.mode == RunMode.MULTIRUN
    job = lambda: run(cfg, out_dir, names)  # noqa: E731
    run_in_dir(job, out_dir, OUTPUTS, cfg.get("overwrite", False), context, multirun)


def main() -> None:
    """Console entry point of ``sde-restore``."""
    precheck(sys.argv[1:], "restore.yaml", GROUPS, __doc__)
    _hydra_main()


if __name__ == "__main__":
    main()
