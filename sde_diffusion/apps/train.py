"""``sde-train``: train a score model by denoising score matching; checkpoint, log and sample.

    sde-train                                        # 2-D toy, MLP, about a minute on a CPU
    sde-train train_data=digits model=unet_digits_small train.batch_size=128 train.ema_decay=0.995 train.max_seconds=300
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
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
import matplotlib
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from torch import Tensor, nn

from ..guidance.labels import cycle_labels
from ..sampling import sample
from ..training import (
    CheckpointManager,
    Trainer,
    TrainLogger,
    cleanup_distributed,
    init_distributed,
)
from ..training.signals import Interrupted, stop_requests
from ._common import (
    UsageError,
    atomic_write_json,
    check_bool,
    check_float,
    check_int,
    resolve_device,
    set_threads,
)
from ._config import build, build_stored, dataset_tensor
from ._labels import training_labels
from ._latent import (
    build_autoencoder,
    finish_autoencoder,
    latent_training_data,
    reconstruction_figure,
    task_of,
)
from ._model import build_score_model, check_fits, fill_model_config, stored_config
from ._precheck import precheck
from ._resume import (
    check_stored,
    newest_valid,
    remove_orphans,
    restore_or_refuse,
    resume_config,
    resume_record,
)
from ._rundir import run_in_dir

log = logging.getLogger(__name__)
#: the stored config's nodes and the allow-list each is checked against on resume
STORED_GROUPS = {"sde": "sde", "model": "model", "train_data": "train_data", "solver": "solver",
                 "autoencoder": "autoencoder", "loss": ""}  # fmt: skip

GROUPS = ("sde", "model", "train_data", "train", "solver", "autoencoder")


#: boolean and number options of sde-train, read with the apps' checks (``denoise=no`` is off)
BOOLS = ("progress", "train.drop_last", "train.ema_warmup", "train.amp", "loss.importance_sampling")
FLOATS: dict[str, dict[str, Any]] = {
    "train.lr": {"minimum": 0, "above": True},
    "train.weight_decay": {"minimum": 0},
    "train.grad_clip": {"minimum": 0},
    "train.ema_decay": {"minimum": 0, "maximum": 1},
    "train.lr_final": {"minimum": 0},
    "train.max_seconds": {"minimum": 0, "above": True, "allow_none": True},
    "loss.eps": {"minimum": 0, "above": True},
}


def _check_options(cfg: DictConfig) -> None:
    """Check the boolean and number options and store them as ``bool`` and ``float``."""
    values = {k: check_bool(k, v) for k in BOOLS if (v := OmegaConf.select(cfg, k)) is not None}
    for key, bounds in FLOATS.items():
        if OmegaConf.select(cfg, key, default="<absent>") != "<absent>":
            values[key] = check_float(key, OmegaConf.select(cfg, key), **bounds)
    values["train.warmup"] = check_int("train.warmup", cfg.train.warmup, 0)
    with read_write(cfg), open_dict(cfg):
        for key, value in values.items():
            OmegaConf.update(cfg, key, value, merge=False)


def run(cfg: DictConfig, out_dir: Path, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Train as configured; return the summary also written to ``train_summary.json``.

    With ``resume=true`` the run goes on from its newest readable checkpoint with the config
    stored in it (``overrides``: this command line's, checked against it; see ``_resume``).
    A SIGINT or SIGTERM finishes the step, saves a checkpoint and raises ``Interrupted``.
    """
    resumed = None
    if check_bool("resume", cfg.get("resume", False)):
        remove_orphans(out_dir / "checkpoints")
        resumed = newest_valid(CheckpointManager(out_dir / "checkpoints"))
        stored = stored_config(resumed[1], resumed[0])
        cfg = resume_config(stored, cfg, overrides or ())
        check_stored(cfg, STORED_GROUPS)
    make = build_stored if resumed else build
    set_threads(cfg.get("threads"))
    _check_options(cfg)
    tc = cfg.train
    for key in ("steps", "batch_size", "checkpoint_every", "keep_last", "log_every"):
        check_int(f"train.{key}", tc[key], 1)
    seed = check_int("train.seed", tc.seed, 0)
    sample_every = (
        None if tc.sample_every is None else check_int("train.sample_every", tc.sample_every, 1)
    )
    info, device = init_distributed(resolve_device(str(cfg.device)))
    dataset = make(cfg.train_data, "train_data")
    data = dataset_tensor(dataset)
    to_unit = getattr(getattr(dataset, "scaler", None), "to_unit", None)  # images -> [0, 1]
    task = task_of(cfg)  # score | autoencoder
    latent = latent_training_data(cfg, data, to_unit)  # latent=PATH: scaled latents, cached
    if latent is not None:
        data, to_unit = latent[0], latent[1]
    shape = tuple(data.shape[1:])
    if tc.drop_last and tc.batch_size * info.world_size > len(data):
        raise UsageError(
            f"train.batch_size={tc.batch_size} (x {info.world_size} processes) is larger than the "
            f"data set ({len(data)} items) with train.drop_last=true"
        )
    sde = make(cfg.sde, "sde")
    if task == "autoencoder":  # the same trainer, checkpoints, logs, resume and signals
        torch.manual_seed(seed)
        model, loss, model_cfg = build_autoencoder(cfg, shape, make)
        labels, p_uncond = None, 0.0
    else:
        model_cfg = fill_model_config(cfg.model, shape)
        labels, p_uncond = training_labels(
            dataset, model_cfg.get("num_classes"), len(data), tc.get("p_uncond", 0.0)
        )
        torch.manual_seed(seed)  # the same initial weights on every rank
        model = build_score_model(sde, model_cfg, str(cfg.parametrisation), make).to(device)
        check_fits(model, data[:2].to(device))
        loss = make(cfg.loss, "loss", sde=sde)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if task == "autoencoder":
        resolved["autoencoder"]["model"] = OmegaConf.to_container(model_cfg)
    else:
        resolved["model"] = OmegaConf.to_container(model_cfg)
    if latent is not None:  # the autoencoder file: resolved path, sha256 digest, shapes
        resolved["latent_reference"] = latent[2]
    extra = {"config": OmegaConf.to_yaml(resolved), "data_shape": list(shape)}
    standardiser = getattr(dataset, "standardiser", None)
    if standardiser is not None:  # samples are mapped back to the data's units with it
        extra["data_transform"] = standardiser.state()
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
        labels=labels,  # None (unconditional): the loss is called exactly as before
        p_uncond=p_uncond,
        null_label=model_cfg.get("num_classes"),
    )
    checkpoints = CheckpointManager(out_dir / "checkpoints", keep_last=tc.keep_last)
    restore_or_refuse(trainer, resumed, checkpoints)
    logger = (
        TrainLogger(out_dir, resume_step=trainer.step if resumed else None)
        if info.is_main
        else None
    )
    solver = make(cfg.solver, "solver")

    def figure(step: int, ema_model: nn.Module, name: str | None = None) -> None:
        path = out_dir / (name or f"figures/samples_{step:08d}.png")
        if task == "autoencoder":
            return reconstruction_figure(ema_model, trainer.data, path, f"step {step}", to_unit)
        sample_figure(cfg, sde, solver, ema_model, trainer.data, path, f"step {step}", to_unit)

    try:
        with stop_requests() as request:
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
                stop_request=request,
            )
    finally:
        if logger is not None:
            logger.close()
    if task == "autoencoder":  # measured with the final weights, stored in the last checkpoint
        summary["latent_scale"] = finish_autoencoder(trainer, checkpoints, extra)
    if summary["stopped_by"] == "stop_request":
        signum = request.signum or signal.SIGTERM  # another rank's signal stopped this one
        raise Interrupted(
            signum,
            f"interrupted by {signal.Signals(signum).name} at step {trainer.step}; checkpoint "
            f"saved to {checkpoints.path(trainer.step)}; resume with: "
            f"sde-train hydra.run.dir={out_dir} resume=true",
        )
    if summary["stopped_by"] == "max_seconds" and info.is_main:
        log.warning(
            "stopped by the wall-clock guard train.max_seconds=%s at step %d of train.steps=%d; "
            "resume with: sde-train hydra.run.dir=%s resume=true",
            tc.max_seconds, trainer.step, tc.steps, out_dir,
        )  # fmt: skip
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
    if getattr(model, "num_classes", None) is not None:  # class-conditional: every class in turn
        model = cycle_labels(model, model.num_classes)
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
        overrides = list(HydraConfig.get().overrides.task)
        context = {"resume": cfg.get("resume")}
        rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 holds the lock
        run_in_dir(lambda: run(cfg, out_dir, overrides), out_dir, (), False, context, lock=rank0)
    finally:
        cleanup_distributed()


def main() -> None:
    """Console entry point of ``sde-train``."""
    precheck(sys.argv[1:], "train.yaml", GROUPS, __doc__)
    sys.argv += resume_record(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
