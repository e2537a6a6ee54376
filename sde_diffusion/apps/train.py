"""``sde-train``: train a score model by denoising score matching; checkpoint, log and sample.

    sde-train                                        # 2-D toy, MLP, about a minute on a CPU
    sde-train train_data=digits model=unet_digits train.max_seconds=300
    sde-train hydra.run.dir=<that run's dir> resume=true
    torchrun --nproc_per_node=2 -m sde_diffusion.apps.train hydra.run.dir=outputs/ddp

Writes into the run directory ``checkpoints/ckpt_<step>.pt`` (the newest ``train.keep_last``),
``train_log.csv`` (step, loss, lr, steps_per_s, elapsed_s), ``samples.png`` (and
``figures/samples_<step>.png`` every ``train.sample_every`` steps) and, last,
``train_summary.json``. Under ``torchrun`` give ``hydra.run.dir`` so that all processes share
one directory; only rank 0 writes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import matplotlib
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from ..sampling import sample
from ..training import (
    CheckpointManager,
    Trainer,
    TrainLogger,
    cleanup_distributed,
    init_distributed,
    load_checkpoint,
)
from ._common import (
    UsageError,
    atomic_write_json,
    check_int,
    precheck_choices,
    resolve_device,
    run_app,
    set_threads,
)
from ._job import build, group_options
from ._model import build_score_model, check_fits, fill_model_config

log = logging.getLogger(__name__)

GROUPS = ("sde", "model", "train_data", "train", "solver")


def dataset_tensor(dataset: Any) -> Tensor:
    """All items of a data set as one float32 tensor ``(N, ...)`` (its ``.data`` if it has one)."""
    data = getattr(dataset, "data", None)
    if not isinstance(data, Tensor):
        items = [dataset[i] for i in range(len(dataset))]
        if not items:
            raise UsageError("train_data: the data set is empty")
        data = torch.stack([x[0] if isinstance(x, tuple | list) else x for x in items])
    if data.ndim < 2 or data.shape[0] == 0:
        raise UsageError(
            f"train_data: expected a non-empty (N, ...) data set, got {tuple(data.shape)}"
        )
    return data.float()


def run(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Train as configured; return the summary also written to ``train_summary.json``."""
    set_threads(cfg.get("threads"))
    tc = cfg.train
    for key in ("steps", "batch_size", "checkpoint_every", "keep_last", "log_every"):
        check_int(f"train.{key}", tc[key], 1)
    seed = check_int("train.seed", tc.seed, 0)
    sample_every = (
        None if tc.sample_every is None else check_int("train.sample_every", tc.sample_every, 1)
    )
    if tc.max_seconds is not None and not float(tc.max_seconds) > 0:
        raise UsageError(f"train.max_seconds must be > 0 or null, got {tc.max_seconds!r}")
    info, device = init_distributed(resolve_device(str(cfg.device)))
    dataset = build(cfg.train_data, "train_data")
    data = dataset_tensor(dataset)
    to_unit = getattr(getattr(dataset, "scaler", None), "to_unit", None)  # images -> [0, 1]
    shape = tuple(data.shape[1:])
    if tc.drop_last and tc.batch_size * info.world_size > len(data):
        raise UsageError(
            f"train.batch_size={tc.batch_size} (x {info.world_size} processes) is larger than the "
            f"data set ({len(data)} items) with train.drop_last=true"
        )
    model_cfg = fill_model_config(cfg.model, shape)
    sde = build(cfg.sde, "sde")
    torch.manual_seed(seed)  # the same initial weights on every rank
    model = build_score_model(sde, model_cfg, str(cfg.parametrisation)).to(device)
    check_fits(model, data[:2].to(device))
    loss = _loss(cfg, sde)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["model"] = OmegaConf.to_container(model_cfg)
    extra = {"config": OmegaConf.to_yaml(resolved), "data_shape": list(shape)}
    trainer = Trainer(
        model,
        loss,
        data,
        batch_size=tc.batch_size,
        lr=float(tc.lr),
        weight_decay=float(tc.weight_decay),
        warmup=int(tc.warmup),
        grad_clip=float(tc.grad_clip),
        ema_decay=float(tc.ema_decay),
        ema_warmup=bool(tc.get("ema_warmup", False)),
        lr_decay=str(tc.get("lr_decay", "none")),
        decay_steps=int(tc.steps),
        lr_final=float(tc.get("lr_final", 0.0)),
        amp=bool(tc.amp),
        seed=seed,
        drop_last=bool(tc.drop_last),
        device=device,
        dist_info=info,
    )
    checkpoints = CheckpointManager(out_dir / "checkpoints", keep_last=tc.keep_last)
    latest = checkpoints.latest()
    if cfg.resume:
        if latest is None:
            raise UsageError(f"resume=true but {checkpoints.directory} holds no checkpoint")
        trainer.load_state_dict(load_checkpoint(latest, map_location=device))
        log.info("resuming from %s (step %d)", latest, trainer.step)
    elif latest is not None:
        raise UsageError(
            f"{checkpoints.directory} already holds checkpoints: pass resume=true to continue, "
            f"or choose another hydra.run.dir"
        )
    logger = (
        TrainLogger(out_dir, resume_step=trainer.step if cfg.resume else None)
        if info.is_main
        else None
    )
    solver = build(cfg.solver, "solver")

    def figure(step: int, ema_model: nn.Module, name: str | None = None) -> None:
        path = out_dir / (name or f"figures/samples_{step:08d}.png")
        sample_figure(cfg, sde, solver, ema_model, trainer.data, path, f"step {step}", to_unit)

    try:
        summary = trainer.fit(
            tc.steps,
            max_seconds=None if tc.max_seconds is None else float(tc.max_seconds),
            checkpoints=checkpoints,
            checkpoint_every=tc.checkpoint_every,
            logger=logger,
            log_every=tc.log_every,
            sample_every=sample_every,
            on_sample=figure,
            extra_state=extra,
            progress=bool(cfg.progress),
        )
    finally:
        if logger is not None:
            logger.close()
    try:
        if info.is_main:
            figure(trainer.step, trainer.ema.module, "samples.png")
            summary.update(checkpoint=str(checkpoints.latest()), world_size=info.world_size)
            atomic_write_json(out_dir / "train_summary.json", summary)
            log.info(
                "trained to step %d (%d steps, %.1f s, %.1f steps/s), final loss %.4f; %s",
                summary["step"], summary["steps_run"], summary["seconds"], summary["steps_per_s"],
                summary["final_loss"], summary["checkpoint"],
            )  # fmt: skip
    finally:
        if info.world_size > 1:  # tear the process group down together: a rank that left
            dist.barrier()  # while rank 0 drew its figure aborted (gloo, rarely)
    return summary


def _loss(cfg: DictConfig, sde: Any) -> Any:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(cfg.loss, sde=sde)
    except InstantiationException as err:
        raise UsageError(f"loss: {err.__cause__ or err}") from err


def sample_figure(
    cfg: DictConfig,
    sde: Any,
    solver: Any,
    model: nn.Module,
    data: Tensor,
    path: Path,
    title: str,
    to_unit: Callable[[Tensor], Tensor] | None = None,
) -> None:
    """Sample with the EMA model and draw the samples: a scatter over the data (2-D), a
    histogram (1-D) or a grid of images (``to_unit`` maps them to [0, 1]; default from [-1, 1])."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import plot

    model.eval()
    num = check_int("sample.num_samples", cfg.sample.num_samples, 1)
    gen = torch.Generator(device=data.device).manual_seed(int(cfg.sample.seed))
    with torch.no_grad():
        x = sample(
            sde, model, solver, (num, *data.shape[1:]), steps=int(cfg.sample.steps),
            generator=gen, device=data.device, check_finite=False,
        ).x.cpu()  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    if x.ndim == 2 and x.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        ref = data[: min(len(data), 5000)].cpu()
        ax.scatter(ref[:, 0], ref[:, 1], s=2, alpha=0.15, color="tab:gray", label="data")
        plot.samples_2d(x, ax=ax, title=f"{type(sde).__name__}, {title}")
        ax.legend(loc="upper right", markerscale=4)
    elif x.ndim == 2 and x.shape[1] == 1:
        fig, ax = plt.subplots(figsize=(5, 4))
        plot.samples_1d(x, ax=ax, title=title)
    else:
        k = min(8, int(num**0.5))
        fig, axes = plt.subplots(k, k, figsize=(k, k), squeeze=False)
        unit = to_unit or (lambda v: ((v + 1) / 2).clamp(0, 1))
        imgs = unit(x[: k * k]).movedim(1, -1)  # CHW -> HWC
        for ax, img in zip(axes.flat, imgs, strict=False):
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@hydra.main(config_path="pkg://sde_diffusion.conf", config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run_app(lambda: run(cfg, out_dir), out_dir, {"resume": bool(cfg.get("resume"))})
    finally:
        cleanup_distributed()


def main() -> None:
    """Console entry point of ``sde-train``."""
    precheck_choices(sys.argv[1:], {g: group_options(g) for g in GROUPS})
    _hydra_main()


if __name__ == "__main__":
    main()
