"""Per-sample seeded Gaussian noise, independent of batch composition.

Each row of a batch has its own integer seed; its k-th draw depends only on (seed, k) and on
the element's position within the row. A sample drawn with seed 7 is therefore the same
whether it is sampled alone, in a batch of 10 or in a batch of 10,000, on any device, which
is what a sweep over batch sizes or a rerun of one bad sample needs (EDM samples per-image
seeds the same way, with one generator per image; Karras et al. 2022, ``generate.py``).

The draws are counter-based, computed on the device in one vectorised pass: a SplitMix64
finaliser (Steele, Lea & Flood 2014) hashes (seed, counter, element) to 53-bit uniforms,
and the Box–Muller transform turns two of them into a standard normal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

_MASK = (1 << 64) - 1


def _signed(c: int) -> int:
    """A 64-bit constant as the signed int64 torch stores."""
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)
_STREAM = _signed(0xD1B54A32D192ED03)


def _shr(x: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix(x: Tensor) -> Tensor:
    """SplitMix64 finaliser, in wrapping int64 arithmetic."""
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    return x ^ _shr(x, 31)


def _uniform(key: Tensor, dtype: torch.dtype) -> Tensor:
    """A uniform on (0, 1) from the top 53 bits of a hashed key (never 0 or 1)."""
    bits = _shr(_mix(key), 11).to(torch.float64)
    return ((bits + 0.5) * 2.0**-53).to(dtype)


class SeededNoise:
    """Standard normal draws keyed by one seed per sample: row ``i`` uses ``seeds[i]``.

    A drop-in noise source for :func:`solvers.integrate` (``noise=SeededNoise(seeds)``).
    Every call advances a call counter kept on the host (no device synchronisation). Draws
    must cover the whole batch: a solver that draws for a subset of rows (the per-sample
    adaptive :class:`GottaGoFast`) is refused with a clear error.
    """

    def __init__(self, seeds: Sequence[int] | Tensor) -> None:
        s = torch.as_tensor(seeds)
        if s.ndim != 1 or s.numel() < 1:
            raise ValueError(
                f"seeds must be a non-empty 1-D sequence of integers, got shape {tuple(s.shape)}"
            )
        if s.dtype.is_floating_point or s.dtype == torch.bool or s.is_complex():
            raise ValueError(f"seeds must be integers, got dtype {s.dtype}")
        if bool((s < 0).any()):
            raise ValueError("seeds must be non-negative integers")
        self.seeds = s.to(torch.int64)
        self.calls = 0

    def _keys(self, like: Tensor) -> Tensor:
        if like.ndim < 1 or like.shape[0] != self.seeds.numel():
            raise ValueError(
                f"SeededNoise holds {self.seeds.numel()} seeds but a draw was asked for "
                f"{like.shape[0] if like.ndim else 0} rows: per-sample seeds need draws over the "
                "whole batch (a solver that draws for a subset of rows cannot use them)"
            )
        if self.seeds.device != like.device:  # moved once, not at every draw
            self.seeds = self.seeds.to(like.device)
        element = torch.arange(math.prod(like.shape[1:]), device=like.device, dtype=torch.int64)
        # Distinct streams per (seed, call): hash the pair, then count elements within it. The
        # call's offset is wrapped to int64 on the host: a Python scalar, no device copy.
        count = _signed((self.calls * (_STREAM & _MASK)) & _MASK)
        self.calls += 1
        stream = _mix(self.seeds * _GOLDEN + count)
        return (stream[:, None] + 2 * element[None, :] * _GOLDEN).reshape(like.shape)

    def normal(self, like: Tensor) -> Tensor:
        """z ~ N(0, I) shaped like ``like``, on its device, in its (floating) dtype."""
        key = self._keys(like)
        dtype = like.dtype if like.dtype.is_floating_point else torch.get_default_dtype()
        work = torch.float64 if dtype == torch.float64 else torch.float32
        u1 = _uniform(key, work)
        u2 = _uniform(key + _GOLDEN, work)
        z = (-2.0 * u1.log()).sqrt() * torch.cos(2.0 * math.pi * u2)
        return z.to(dtype)

    def increment(self, t: Tensor, t_next: Tensor, like: Tensor) -> Tensor:
        """W(t_next) - W(t) ~ N(0, |t_next - t| I), shaped like ``like``."""
        return self.normal(like) * (t_next - t).abs().sqrt()
