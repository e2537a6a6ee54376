"""Bits per dimension of discrete data: uniform dequantisation and the data-scaling Jacobian.

Pixels k in {0, ..., 2^n - 1}^D (n = 8 bits: 0..255) are dequantised to v = k + u with
u ~ U[0, 1)^D, so v lies in [0, 2^n)^D; the model sees the scaled data x = a v + b, e.g.
a = 1/256, b = 0 for [0, 1) or a = 2/256, b = -1 for [-1, 1). The change of variables
p_V(v) = p_X(a v + b) |a|^D gives, with no hidden offset,

    log p_V(v) = log p_X(x) + D log|a|,
    bits/dim   = -log p_V(v) / (D ln 2) = -log p_X(x) / (D ln 2) - log2|a|.

By Jensen, log P(k) = log int_{[0,1)^D} p_V(k + u) du >= E_u[log p_V(k + u)], so the mean
bits/dim over dequantisation noise bounds the discrete model's bits/dim from above (Theis et
al., 2016, Sec. 3.1; Ho et al., 2019, Sec. 3.1). For data scaled to [-1, 1) with 8 bits,
-log2 a = -log2(2/256) = 7: the "+7" of Song et al. (2021)'s likelihood code is this term.
For continuous data (no quantisation), bits/dim is -log p_X(x) / (D ln 2), ``scaling=None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DataScaling:
    """x = scale * v + shift: dequantised pixels v in [0, 2^n) to the model's data space."""

    scale: float
    shift: float = 0.0

    def __post_init__(self) -> None:
        for name in ("scale", "shift"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if self.scale == 0:
            raise ValueError("scale must be non-zero (the map v -> scale v + shift is invertible)")

    @classmethod
    def to_range(cls, low: float, high: float, n_bits: int = 8) -> DataScaling:
        """The map of [0, 2^n) onto [low, high): scale = (high - low) / 2^n, shift = low."""
        _check_bits(n_bits)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"need finite low < high, got low={low!r}, high={high!r}")
        return cls(scale=(high - low) / 2**n_bits, shift=float(low))

    def __call__(self, v: Tensor) -> Tensor:
        """x = scale * v + shift."""
        return self.scale * v + self.shift

    def inverse(self, x: Tensor) -> Tensor:
        """v = (x - shift) / scale."""
        return (x - self.shift) / self.scale

    def log_abs_det(self, dim: int) -> float:
        """log |dx/dv| = D log|scale| for D dimensions."""
        return dim * math.log(abs(self.scale))


def _check_bits(n_bits: int) -> None:
    if isinstance(n_bits, bool) or not isinstance(n_bits, int) or not 1 <= n_bits <= 16:
        raise ValueError(f"n_bits must be an integer in [1, 16], got {n_bits!r}")


def uniform_dequantize(
    pixels: Tensor,
    *,
    n_bits: int = 8,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """v = k + u, u ~ U[0, 1): integer-valued pixels k in {0, ..., 2^n - 1} to [0, 2^n)."""
    _check_bits(n_bits)
    k = pixels.to(torch.float64)
    top = 2**n_bits - 1
    if not bool(torch.isfinite(k).all()) or bool((k != k.round()).any()):
        raise ValueError("pixels must hold integer values (dequantise raw pixels, not scaled data)")
    if bool(((k < 0) | (k > top)).any()):
        raise ValueError(f"pixels must lie in {{0, ..., {top}}} for n_bits={n_bits}")
    u = torch.rand(pixels.shape, generator=generator, device=pixels.device, dtype=dtype)
    return k.to(dtype) + u


def bits_per_dim(logp: Tensor, dim: int, scaling: DataScaling | None = None) -> Tensor:
    """-(log p_X(x) + D log|a|) / (D ln 2) per sample; ``scaling=None``: continuous data.

    ``logp`` is the model's log-density in its data space (nats), ``dim`` the number D of
    dimensions per sample, ``scaling`` the map x = a v + b from dequantised pixels v.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    log_det = 0.0 if scaling is None else scaling.log_abs_det(dim)
    return -(logp + log_det) / (dim * math.log(2))
