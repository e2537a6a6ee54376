"""Sampling in chunks of at most ``batch_size`` samples, and the memory such a run needs.

With per-sample ``seeds`` (:class:`solvers.SeededNoise`) the prior draw and all solver noise
of sample ``i`` depend on ``seeds[i]`` only, so a fixed-step solver gives the same samples,
bit for bit, whatever the chunking. Adaptive solvers choose their steps per batch (an error
norm over the batch), so their samples move within tolerance when the chunks change.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from solvers.base import Solver

from ..reverse import ScoreFn
from ..sde.base import SDE
from .driver import SampleResult, sample

#: copies of one chunk's state that a solver may hold at once (the state, its stages or
#: multistep history, the noise draw and the score's temporaries): a rough upper bound
STATE_FACTOR = 8


def chunk_bytes(batch_size: int, event_shape: Sequence[int], dtype: torch.dtype) -> int:
    """Estimated peak bytes of sampling one chunk: batch x event size x element x STATE_FACTOR."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return batch_size * math.prod(event_shape) * itemsize * STATE_FACTOR


def available_memory(device: torch.device | str) -> int | None:
    """Free bytes on ``device``: CUDA's free memory, else the host's available RAM.

    ``None`` where it cannot be told (other devices, a system without these counters).
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:  # MemAvailable counts reclaimable caches too
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def sample_chunked(
    sde: SDE,
    score_fn: ScoreFn,
    solver: Solver,
    shape: Sequence[int],
    *,
    batch_size: int,
    seeds: Sequence[int] | Tensor | None = None,
    progress: bool = False,
    out_device: torch.device | str | None = None,
    x_init: Tensor | None = None,
    callback: Callable[[int, Tensor, Tensor], None] | None = None,
    **sample_kwargs: Any,
) -> SampleResult:
    """Draw ``shape[0]`` samples with :func:`~sde_diffusion.sampling.sample`, ``batch_size`` at a time.

    Args:
        sde, score_fn, solver, shape: as for :func:`~sde_diffusion.sampling.sample`.
        batch_size: the most samples integrated at once (an integer >= 1).
        seeds: one seed per sample; chunk ``k`` gets its slice, so with a fixed-step solver
            the samples do not depend on ``batch_size``. With ``generator=`` instead, the
            chunks draw one after another from it, and the samples depend on the chunking.
        progress: a progress bar over the chunks (over the steps when there is one chunk).
        out_device: where the samples are gathered (default: where they were drawn), e.g.
            ``"cpu"`` so that only one chunk at a time lives on the accelerator.
        x_init: optional start states, sliced like the seeds.
        callback: handed to every chunk's run, so it sees each chunk's steps in turn.
        sample_kwargs: any other argument of :func:`~sde_diffusion.sampling.sample`.

    Returns:
        A :class:`~sde_diffusion.sampling.SampleResult` whose ``x`` holds the chunks in order;
        ``nfe``, ``steps`` and ``rejected`` are summed over the chunks (the score evaluations
        actually made, each on at most ``batch_size`` samples); a saved ``trajectory`` is
        gathered along its batch dimension, with the first chunk's ``times``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    shape = tuple(int(s) for s in shape)
    n = shape[0]
    if seeds is not None:
        seeds = torch.as_tensor(seeds)
        if seeds.ndim != 1 or seeds.numel() != n:
            raise ValueError(f"seeds must hold one seed per sample ({n}), got {tuple(seeds.shape)}")
    if n <= batch_size:  # one chunk: exactly sample()
        res = sample(sde, score_fn, solver, shape, seeds=seeds, progress=progress,
                     x_init=x_init, callback=callback, **sample_kwargs)  # fmt: skip
        if out_device is not None:
            res.x = res.x.to(out_device)
            if res.trajectory is not None:
                res.trajectory = res.trajectory.to(out_device)
        return res
    out = trajectory = times = None
    nfe = steps = rejected = 0
    starts = range(0, n, batch_size)
    for i in tqdm(starts, disable=not progress, desc="chunks", leave=False):
        j = min(i + batch_size, n)
        res = sample(
            sde,
            score_fn,
            solver,
            (j - i, *shape[1:]),
            seeds=None if seeds is None else seeds[i:j],
            x_init=None if x_init is None else x_init[i:j],
            callback=callback,
            **sample_kwargs,
        )
        if out is None:  # one buffer filled in place: no second copy of all samples
            target = res.x.device if out_device is None else torch.device(out_device)
            out = torch.empty((n, *res.x.shape[1:]), dtype=res.x.dtype, device=target)
            if res.trajectory is not None:
                size = (res.trajectory.shape[0], n, *res.trajectory.shape[2:])
                trajectory = res.trajectory.new_empty(size, device=target)
                times = res.times
        out[i:j] = res.x
        if trajectory is not None:
            trajectory[:, i:j] = res.trajectory
        nfe, steps, rejected = nfe + res.nfe, steps + res.steps, rejected + res.rejected
    return SampleResult(
        x=out, nfe=nfe, steps=steps, rejected=rejected, times=times, trajectory=trajectory
    )
