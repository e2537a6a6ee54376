"""``sde-sample``: draw samples with a chosen SDE and solver; write samples, metrics and a figure.

    sde-sample sde=ve solver=pc steps=500 data=gaussian_mixture
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import hydra
import matplotlib
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..metrics.sliced_wasserstein import sliced_wasserstein
from ..metrics.total_variation import tv_to_mixture
from ..sampling import sample
from ._common import (
    UsageError,
    atomic_write_json,
    check_int,
    resolve_device,
    resolve_dtype,
    run_app,
)

log = logging.getLogger(__name__)


def _build(cfg: DictConfig, key: str) -> Any:
    """Instantiate a config group, turning Hydra's wrapped errors into one clear line."""
    try:
        return instantiate(cfg[key])
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise UsageError(f"{key}: {cause}") from err


def _score_fn(cfg: DictConfig, sde: Any, data: Any):
    if cfg.checkpoint is not None:
        path = Path(str(cfg.checkpoint))
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint={str(path)!r}: no such file")
        raise UsageError(
            "checkpoint: loading trained score models is not available yet; use checkpoint=null "
            "to sample with the dataset's exact score"
        )
    return data.score_fn(sde)


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Sample as configured, write ``samples.npz``, a figure and ``metrics.json`` (last)."""
    device = resolve_device(str(cfg.device))
    dtype = resolve_dtype(str(cfg.dtype))
    num = check_int("num_samples", cfg.num_samples, 2)
    seed = check_int("seed", cfg.seed, 0)
    steps = cfg.steps
    sde = _build(cfg, "sde")
    solver = _build(cfg, "solver")
    data = _build(cfg, "data")
    if not solver.adaptive:
        steps = check_int("steps", steps, 1)
    eps = sde.eps if cfg.eps is None else cfg.eps
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < sde.T:
        raise UsageError(f"eps must be a number in (0, T) = (0, {sde.T}), got {eps!r}")
    score = _score_fn(cfg, sde, data)

    generator = torch.Generator(device=device).manual_seed(seed)
    shape = (num, *data.event_shape)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = sample(
        sde, score, solver, shape, steps=steps, eps=float(eps), generator=generator,
        device=device, dtype=dtype, progress=bool(cfg.progress), denoise=bool(cfg.denoise),
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    x = result.x.detach()

    np.savez(out_dir / "samples.npz", x=x.cpu().numpy())
    metrics: dict[str, Any] = {
        "sde": type(sde).__name__,
        "solver": type(solver).__name__,
        "steps": steps if not solver.adaptive else None,
        "accepted_steps": result.steps,
        "rejected_steps": result.rejected,
        "nfe": result.nfe,
        "wall_time_s": wall,
        "seed": seed,
        "device": str(device),
        "dtype": str(cfg.dtype),
        "num_samples": num,
        "eps": float(eps),
    }
    reference = data.sample(num, generator=torch.Generator().manual_seed(seed + 1))
    x64 = x.cpu().double()
    metrics["sliced_wasserstein"] = float(sliced_wasserstein(
        x64, reference.double(), generator=torch.Generator().manual_seed(seed + 2)
    ))
    if data.dim <= 2:
        tv = tv_to_mixture(x64, data)
        metrics.update(tv=float(tv.tv), tv_floor=float(tv.floor), tv_ratio=float(tv.ratio))
    metrics["finite"] = bool(all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)))

    if cfg.figure and data.dim <= 2:
        _figure(x64, data, metrics, out_dir / "samples.png")
    atomic_write_json(out_dir / "metrics.json", metrics)
    log.info(
        "%s + %s: nfe=%d, %.2f s, sliced W2=%.4f%s", metrics["sde"], metrics["solver"],
        result.nfe, wall, metrics["sliced_wasserstein"],
        f", TV={metrics['tv']:.4f} (floor {metrics['tv_floor']:.4f})" if "tv" in metrics else "",
    )
    return metrics


def _figure(x: torch.Tensor, data: Any, metrics: dict[str, Any], path: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import plot

    title = f"{metrics['sde']} / {metrics['solver']}, NFE={metrics['nfe']}"
    if "tv" in metrics:
        title += f"\nTV={metrics['tv']:.3f} (floor {metrics['tv_floor']:.3f})"
    fig, ax = plt.subplots(figsize=(5, 5))
    draw = plot.samples_2d if data.dim == 2 else plot.samples_1d
    draw(x, log_prob=data.log_prob, ax=ax, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@hydra.main(config_path="pkg://sde_diffusion.conf", config_name="sample", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    run_app(lambda: run(cfg, out_dir))


def main() -> None:
    """Console entry point of ``sde-sample``."""
    _hydra_main()


if __name__ == "__main__":
    main()
