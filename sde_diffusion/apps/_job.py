"""One sampling job, shared by ``sde-sample`` and ``sde-compare``: build, sample, measure."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from ..metrics.sliced_wasserstein import sliced_wasserstein
from ..metrics.total_variation import tv_to_mixture
from ..sampling import chunked
from ._common import UsageError, check_int
from ._config import build, group_options, load_group
from ._latent import decoded_data
from ._model import load_trained
from ._reference import HeldOut, checkpoint_data


def explicit_data(overrides: Sequence[str]) -> bool:
    """Whether a command line chose the data (``data=...`` or ``data.KEY=...``)."""
    return any(o.lstrip("+~").partition("=")[0].split(".")[0] == "data" for o in overrides)


def data_for(checkpoint: Any, data_cfg: Any, explicit: bool = False) -> Any:
    """What samples are scored against: the ``data`` config, or, for a checkpoint when ``data``
    was not chosen on the command line, the data it was trained on (its exact law, or held-out
    data: :mod:`._reference`)."""
    if checkpoint is None or explicit:
        return build(data_cfg, "data")
    trained = load_trained(checkpoint)
    data = checkpoint_data(trained.config, trained.data_transform)
    return decoded_data(trained.config, data, f"checkpoint={str(checkpoint)!r}")  # latent: decoded


def score_samples(x: torch.Tensor, data: Any, sde: Any, eps: float, seed: int) -> dict[str, Any]:
    """:func:`evaluate` against an exact law, or the held-out metrics of a checkpoint's data."""
    if isinstance(data, HeldOut):
        return data.evaluate(x, seed)
    return evaluate(x, data, sde, eps, seed)


def sde_for(checkpoint: Any, sde: Any) -> Any:
    """The SDE to sample with: the one a checkpoint was trained with, else ``sde``."""
    if checkpoint is None:
        return sde
    return load_trained(checkpoint).sde


def sde_config_name(sde: Any) -> str:
    """The ``conf/sde/`` name of the class of ``sde`` (a checkpoint's ``VESDE`` gives ``"ve"``),
    or the class name where no packaged config names that class."""
    cls = type(sde).__name__
    for name in group_options("sde"):
        if str(load_group("sde", name).get("_target_", "")).rsplit(".", 1)[-1] == cls:
            return name
    return cls


def score_for(checkpoint: Any, sde: Any, data: Any):
    """The score to sample with: the dataset's exact score when ``checkpoint`` is null, else
    the checkpoint's score model (EMA weights), which must have been trained with ``sde``."""
    if checkpoint is not None:
        trained = load_trained(checkpoint)
        if repr(trained.sde) != repr(sde):
            raise UsageError(
                f"checkpoint={str(checkpoint)!r} was trained with {trained.sde!r}, "
                f"not {sde!r}: sample with the SDE it was trained with"
            )
        shape = tuple(getattr(data, "event_shape", trained.data_shape))
        if shape != trained.data_shape:
            raise UsageError(
                f"checkpoint={str(checkpoint)!r} was trained on data of shape "
                f"{trained.data_shape}, but the data here has shape {shape}"
            )
        return trained.score_fn()
    return data.score_fn(sde)


def check_eps(eps: Any, sde: Any) -> float:
    eps = sde.eps if eps is None else eps
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < sde.T:
        raise UsageError(f"eps must be a number in (0, T) = (0, {sde.T}), got {eps!r}")
    return float(eps)


#: the most steps the apps run: a step of T / 10**6 is ~17 float32 spacings of t near T = 1;
#: at 10**7 it would be ~2, so the float32 grid would be mostly rounding (and run for hours)
MAX_STEPS = 1_000_000


def sample_job(
    sde: Any,
    solver: Any,
    data: Any,
    score: Any,
    *,
    steps: Any,
    eps: float,
    num_samples: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    denoise: bool = False,
    progress: bool = False,
    batch_size: Any = None,
    shard: tuple[int, int] = (0, 1),
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Sample and time it; return the samples (on the host) and the run's bookkeeping.

    ``shard=(rank, world)``: this process draws only samples ``rank * n // world`` to
    ``(rank + 1) * n // world`` (with their own seeds), for :func:`gather_shards`.

    ``num_samples`` are integrated ``batch_size`` at a time (None: all at once). Sample ``i``
    has its own seed, ``seed * 2**32 + i`` (:class:`solvers.SeededNoise`), so with a fixed-step
    solver the samples do not depend on ``batch_size``. Adaptive stochastic solvers, which draw
    noise for the samples still running only, draw from one generator seeded with ``seed``
    instead; adaptive solvers choose their steps per chunk. ``nfe``, ``accepted_steps`` and
    ``rejected_steps`` are per sample: the mean over the chunks. A run whose first chunk or
    whose samples will not fit in the free memory, or with more than ``MAX_STEPS`` steps, is
    refused before it starts.
    """
    if not solver.adaptive:
        steps = check_int("steps", steps, 1)
        if steps > MAX_STEPS:
            raise UsageError(
                f"steps={steps} is above the maximum of {MAX_STEPS:,}: steps that short are "
                "mostly float32 rounding of t near T"
            )
    batch = num_samples if batch_size is None else check_int("batch_size", batch_size, 1)
    batch = min(batch, num_samples)
    if num_samples > 2**32 or seed >= 2**31:
        raise UsageError(
            f"per-sample seeds need num_samples <= 2**32 and seed < 2**31, "
            f"got num_samples={num_samples}, seed={seed}"
        )
    itemsize = torch.empty((), dtype=dtype).element_size()
    n_elements = num_samples * math.prod(data.event_shape)
    host = n_elements * (itemsize + 16)  # the samples, and the metrics' two float64 copies
    free_host = chunked.available_memory("cpu")
    if free_host is not None and host > free_host:
        raise UsageError(
            f"num_samples={num_samples} needs about {host / 2**30:.3g} GiB of host memory for "
            f"the samples and their metrics, but {free_host / 2**30:.3g} GiB are available"
        )
    need = chunked.chunk_bytes(batch, data.event_shape, dtype)
    free = chunked.available_memory(device)
    if free is not None and device.type == "cpu":
        free -= host  # the samples gathered so far share the host's memory
    if free is not None and need > free:
        raise UsageError(
            f"batch_size={batch} needs about {need / 2**30:.3g} GiB on {device} for one chunk "
            f"({chunked.STATE_FACTOR} copies of the state), but {max(free, 0) / 2**30:.3g} GiB "
            "are available: lower batch_size"
        )
    per_sample = not (solver.adaptive and solver.stochastic)
    rank, world = shard
    lo, hi = rank * num_samples // world, (rank + 1) * num_samples // world
    if world > 1 and not per_sample:
        raise UsageError(
            f"solver={type(solver).__name__} draws its noise from one generator (adaptive and "
            "stochastic): it cannot be split over processes; run it in one"
        )
    if per_sample:
        noise = {"seeds": seed * 2**32 + torch.arange(lo, hi, dtype=torch.int64)}
    else:
        noise = {"generator": torch.Generator(device=device).manual_seed(seed)}
    total, num_samples = num_samples, hi - lo
    batch = max(1, min(batch, num_samples))
    chunks = math.ceil(num_samples / batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    res = chunked.sample_chunked(
        sde,
        score,
        solver,
        (num_samples, *data.event_shape),
        batch_size=batch,
        out_device="cpu",
        steps=steps,
        eps=eps,
        device=device,
        dtype=dtype,
        progress=progress,
        denoise=denoise,
        **noise,
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    info = {
        "sde": type(sde).__name__,
        "solver": type(solver).__name__,
        "steps": None if solver.adaptive else steps,
        "nfe": round(res.nfe / chunks),
        "accepted_steps": round(res.steps / chunks),
        "rejected_steps": round(res.rejected / chunks),
        "wall_time_s": wall,
        "seed": seed,
        "per_sample_seeds": per_sample,
        "device": str(device),
        "num_samples": total,
        "batch_size": batch,
        "processes": world,
        "eps": eps,
        "denoise": bool(denoise),
    }
    return res.x.detach(), info


def gather_shards(x: torch.Tensor, info: dict[str, Any], world: int) -> torch.Tensor | None:
    """Rank 0: every process's shard of :func:`sample_job`, in sample order (the samples of a
    one-process run with the same seeds); the wall time becomes the slowest process's. Other
    ranks: ``None``. A no-op for one process."""
    if world == 1:
        return x
    import torch.distributed as dist

    wall = torch.tensor([info["wall_time_s"]], dtype=torch.float64)
    dist.all_reduce(wall, op=dist.ReduceOp.MAX)
    info["wall_time_s"] = float(wall)
    parts: list[Any] | None = [None] * world if dist.get_rank() == 0 else None
    dist.gather_object(x.cpu(), parts, dst=0)  # in-process traffic between ranks, not a file
    return torch.cat(parts) if parts is not None else None


def evaluate(x: torch.Tensor, data: Any, sde: Any, eps: float, seed: int) -> dict[str, float]:
    """Distances of the samples to the exact law at ``eps``: sliced W2 and, in 1-D/2-D, TV."""
    target = data.at(eps, sde)
    x64 = x.cpu().double()
    reference = target.sample(x.shape[0], generator=torch.Generator().manual_seed(seed + 1))
    out = {
        "sliced_wasserstein": float(
            sliced_wasserstein(
                x64, reference.double(), generator=torch.Generator().manual_seed(seed + 2)
            )
        )
    }
    if data.dim <= 2:
        tv = tv_to_mixture(x64, target)
        out.update(tv=float(tv.tv), tv_floor=float(tv.floor), tv_ratio=float(tv.ratio))
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if bad or not bool(torch.isfinite(x).all()):
        raise FloatingPointError(f"non-finite samples or metrics ({', '.join(bad) or 'samples'})")
    return out
