"""The training loop: AdamW with linear warm-up and an optional cosine or linear decay, gradient
clipping, an EMA of the weights (optionally warmed up), mixed precision on CUDA, data
parallelism, checkpoints and exact resumption.

The loss is any callable ``loss_fn(model, x0, generator=...) -> scalar``, such as the
denoising score matching loss of Song et al. (2021, Eq. 7). Every random draw of a step comes
from generators whose states are checkpointed (the batch order, the loss's t and z, the global
torch RNG used by dropout), so a resumed run repeats the loss sequence of an uninterrupted one.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ..guidance.labels import drop_labels
from .checkpoint import CheckpointManager
from .distributed import DistInfo
from .log import TrainLogger
from .sampler import ShardedBatches
from .schedules import LR_DECAYS, LinearWarmup, WarmupDecay, warmup_ema

__all__ = ["LR_DECAYS", "LinearWarmup", "Trainer", "WarmupDecay"]

LossFn = Callable[..., Tensor]


def _check(name: str, value: float, low: float, high: float | None = None) -> None:
    ok = math.isfinite(value) and value >= low and (high is None or value <= high)
    if isinstance(value, bool) or not ok:
        rng = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a finite number in {rng}, got {value!r}")


class Trainer:
    """Train ``model`` (any ``nn.Module``, usually a ``ScoreModel``) on the rows of ``data``.

    Args:
        model: the network wrapper; ``loss_fn`` calls it as ``model(x_t, t)``.
        loss_fn: ``loss_fn(model, x0, generator=g) -> scalar``.
        data: the whole training set, shape ``(N, ...)``; batches are rows of it.
        batch_size: per process; lr, weight_decay: AdamW; warmup: linear warm-up steps.
        grad_clip: clip the global gradient norm to this (0 turns clipping off).
        ema_decay: decay of the exponential moving average of the weights.
        ema_warmup: use min(ema_decay, (1 + n) / (10 + n)) after n updates instead.
        lr_decay: "none" (constant after warm-up), "cosine" or "linear" decay to
            ``lr * lr_final`` at step ``decay_steps`` (:class:`WarmupDecay`).
        amp: float16 autocast and a gradient scaler; CUDA only (ignored on CPU).
        seed: seeds the batch order and the loss noise (offset per rank).
        dist_info: rank and world size; with ``world_size > 1`` the model is wrapped in DDP.
        labels: ``(N,)`` integer class of each row of ``data``, for a class-conditional model
            (or a classifier): ``loss_fn`` then also gets ``labels=`` of the batch.
        p_uncond: each label is replaced by ``null_label`` with this probability (label
            dropout for classifier-free guidance; Ho & Salimans, 2022, Alg. 1), drawn from the
            checkpointed loss generator.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Tensor,
        *,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup: int = 100,
        grad_clip: float = 1.0,
        ema_decay: float = 0.999,
        ema_warmup: bool = False,
        lr_decay: str = "none",
        decay_steps: int | None = None,
        lr_final: float = 0.0,
        amp: bool = False,
        seed: int = 0,
        drop_last: bool = True,
        device: torch.device | str | None = None,
        dist_info: DistInfo | None = None,
        labels: Tensor | None = None,
        p_uncond: float = 0.0,
        null_label: int | None = None,
    ) -> None:
        _check("lr", lr, 0.0)
        _check("p_uncond", p_uncond, 0.0, 1.0)
        if labels is not None and (
            labels.dtype.is_floating_point or tuple(labels.shape) != (len(data),)
        ):
            raise ValueError(f"labels must be {len(data)} integers, one per data row")
        if p_uncond > 0 and (labels is None or null_label is None):
            raise ValueError("p_uncond > 0 needs labels and the null_label to drop them to")
        _check("weight_decay", weight_decay, 0.0)
        _check("warmup", warmup, 0)
        _check("grad_clip", grad_clip, 0.0)
        _check("ema_decay", ema_decay, 0.0, 1.0)
        _check("lr_final", lr_final, 0.0, 1.0)
        if lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got {lr_decay!r}")
        if lr_decay != "none" and (
            isinstance(decay_steps, bool) or not isinstance(decay_steps, int) or decay_steps < 1
        ):
            raise ValueError(
                f"decay_steps must be an integer >= 1 with lr_decay, got {decay_steps!r}"
            )
        self.device = torch.device(device) if device is not None else data.device
        self.dist = dist_info or DistInfo()
        self.data = data.to(self.device)
        self.labels = None if labels is None else labels.long().to(self.device)
        self.p_uncond, self.null_label = float(p_uncond), null_label
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.grad_clip = float(grad_clip)
        avg = warmup_ema(ema_decay) if ema_warmup else get_ema_multi_avg_fn(ema_decay)
        self.ema = AveragedModel(self.model, multi_avg_fn=avg, use_buffers=True)
        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=lr, weight_decay=weight_decay
        )
        factor = (
            LinearWarmup(warmup)
            if lr_decay == "none"
            else WarmupDecay(warmup, lr_decay, decay_steps, lr_final)
        )
        self.scheduler = LambdaLR(self.optimizer, factor)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        rank, world = self.dist.rank, self.dist.world_size
        self.batches = ShardedBatches(
            len(self.data),
            batch_size,
            seed=2 * (seed * world + rank),
            rank=rank,
            world_size=world,
            drop_last=drop_last,
        )
        self.noise = torch.Generator(device=self.device).manual_seed(2 * (seed * world + rank) + 1)
        self.step = 0
        self.history: list[float] = []  # the loss of every step run by this object

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def train_step(self, stop: bool = False) -> tuple[float, bool]:
        """One optimiser step. Returns the loss (averaged over ranks) and whether any rank
        asked to ``stop`` (so that all ranks stop together). A non-finite loss raises
        ``FloatingPointError`` before the weights are touched."""
        idx = self.batches.next().to(self.device)
        x0, kw = self.data[idx], {}
        if self.labels is not None:  # unlabelled training calls the loss exactly as before
            kw["labels"] = drop_labels(self.labels[idx], self.p_uncond, self.null_label, self.noise)
        self.net.train()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss = self.loss_fn(self.net, x0, generator=self.noise, **kw)
        both = torch.stack([loss.detach().float(), torch.tensor(float(stop), device=self.device)])
        if self.dist.enabled:
            dist.all_reduce(both)
            both[0] /= self.dist.world_size
        value, stop_all = both.tolist()
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss is {value} at step {self.step + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.ema.update_parameters(self.model)
        self.step += 1
        self.history.append(value)
        return value, stop_all > 0

    def fit(
        self,
        steps: int,
        *,
        max_seconds: float | None = None,
        checkpoints: CheckpointManager | None = None,
        checkpoint_every: int | None = None,
        logger: TrainLogger | None = None,
        log_every: int = 100,
        sample_every: int | None = None,
        on_sample: Callable[[int, nn.Module], None] | None = None,
        extra_state: dict[str, Any] | None = None,
        progress: bool = False,
        stop_request: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Train until ``steps`` optimiser steps in all or ``max_seconds`` of this call,
        whichever comes first; checkpoint every ``checkpoint_every`` steps and at the end.

        Only rank 0 logs, samples and writes. A NaN loss raises ``FloatingPointError`` naming
        the step and the last good checkpoint; files already written are left as they are.
        ``stop_request()`` (e.g. a :class:`~sde_diffusion.training.signals.StopRequest` set by
        SIGTERM) is polled after each step: the step finishes, a checkpoint is written and the
        loop ends. The summary's ``stopped_by`` says why it ended: ``"steps"``,
        ``"max_seconds"`` or ``"stop_request"``.
        """
        main = self.dist.is_main
        start_step, start = self.step, time.perf_counter()
        bar = tqdm(total=steps, initial=self.step, disable=not (progress and main), unit="step")
        window: list[float] = []
        saved_step = -1
        t_log, step_log = start, self.step
        stopped_by = "steps"
        try:
            while self.step < steps:
                late = max_seconds is not None and time.perf_counter() - start >= max_seconds
                asked = stop_request is not None and bool(stop_request())
                loss, stop = self.train_step(stop=late or asked)
                if stop:  # this rank or another: all ranks stop after the same step
                    asked = asked or not late
                    stopped_by = "stop_request" if asked else "max_seconds"
                window.append(loss)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if logger is not None and main and self.step % log_every == 0:
                    now = time.perf_counter()
                    rate = (self.step - step_log) / max(now - t_log, 1e-9)
                    logger.log(self.step, sum(window) / len(window), self.lr, rate, now - start)
                    window, t_log, step_log = [], now, self.step
                if (
                    checkpoints is not None
                    and checkpoint_every
                    and self.step % checkpoint_every == 0
                ):
                    self.save(checkpoints, extra_state)
                    saved_step = self.step
                if (
                    on_sample is not None
                    and main
                    and sample_every
                    and self.step % sample_every == 0
                ):
                    on_sample(self.step, self.ema.module)
                if stop:
                    break
        except FloatingPointError as err:
            last = checkpoints.latest() if checkpoints is not None else None
            where = f"the last good checkpoint is {last}" if last else "no checkpoint was saved"
            raise FloatingPointError(f"{err}: training stopped; {where}") from err
        finally:
            bar.close()
        if checkpoints is not None and saved_step != self.step and self.step > start_step:
            self.save(checkpoints, extra_state)
        seconds = time.perf_counter() - start
        done = self.step - start_step
        return {
            "step": self.step,
            "steps_run": done,
            "seconds": seconds,
            "steps_per_s": done / max(seconds, 1e-9),
            "final_loss": self.history[-1] if self.history else float("nan"),
            "stopped_by": stopped_by,
        }

    # --- checkpoints -------------------------------------------------------------------
    def _rng_state(self) -> dict[str, Any]:
        state = {
            "torch": torch.get_rng_state(),
            "data": self.batches.state_dict(),
            "noise": self.noise.get_state(),
        }
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, EMA, optimiser, scheduler, scaler,
        step and the RNG states of every rank (a list indexed by rank)."""
        rng = [self._rng_state()]
        if self.dist.enabled:
            rng = [None] * self.dist.world_size
            dist.all_gather_object(rng, _to_cpu(self._rng_state()))
        return {
            "format": 1,
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "world_size": self.dist.world_size,
        }

    def save(self, checkpoints: CheckpointManager, extra: dict[str, Any] | None = None) -> Path:
        state = self.state_dict()  # collective under DDP: every rank takes part
        if not self.dist.is_main:
            return checkpoints.path(self.step)
        return checkpoints.save(self.step, {**state, **(extra or {})})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        rng = state["rng"]
        if len(rng) != self.dist.world_size:
            warnings.warn(
                f"the checkpoint was written by {len(rng)} process(es), this run has "
                f"{self.dist.world_size}: the batch order and noise restart from the seed",
                stacklevel=2,
            )
            return
        mine = _to_cpu(rng[self.dist.rank])  # a load with map_location="cuda" moved them
        torch.set_rng_state(mine["torch"])
        self.batches.load_state_dict(mine["data"])
        self.noise.set_state(mine["noise"])
        if self.device.type == "cuda" and "cuda" in mine:
            torch.cuda.set_rng_state(mine["cuda"], self.device)


def _to_cpu(tree: Any) -> Any:
    if isinstance(tree, Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        return {k: _to_cpu(v) for k, v in tree.items()}
    return tree
