"""The latent scale: per-channel shift and scale that give the latents unit variance.

u = (z - m_c) / s_c, with m_c and s_c the mean and standard deviation of channel c of the
latents z = E(x) over the training set (all images and positions). LDM rescales its latents by
one "scale factor" so that they enter the diffusion with unit variance (Rombach et al., 2022,
Sec. 4.3.2 and App. G); here it is measured per channel and stored with the autoencoder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["LatentScale", "measure_latent_scale"]


def _per_channel(v: Tensor, like: Tensor) -> Tensor:
    """(c,) -> (1, c, 1, ..., 1) on ``like``'s device and dtype, for any latent rank."""
    return v.to(device=like.device, dtype=like.dtype).reshape(1, -1, *[1] * (like.ndim - 2))


@dataclass(frozen=True)
class LatentScale:
    """u = (z - shift) / scale per channel; ``denormalise`` undoes it."""

    shift: Tensor
    scale: Tensor

    def __post_init__(self) -> None:
        if self.shift.ndim != 1 or self.shift.shape != self.scale.shape:
            raise ValueError(
                f"shift and scale must be vectors of one length, got shapes "
                f"{tuple(self.shift.shape)} and {tuple(self.scale.shape)}"
            )
        if not bool(torch.isfinite(self.shift).all()) or not bool((self.scale > 0).all()):
            raise ValueError("the latent scale must be finite and > 0 in every channel")

    @property
    def channels(self) -> int:
        return int(self.shift.numel())

    def normalise(self, z: Tensor) -> Tensor:
        """u = (z - shift) / scale."""
        return (z - _per_channel(self.shift, z)) / _per_channel(self.scale, z)

    def denormalise(self, u: Tensor) -> Tensor:
        """z = shift + scale u."""
        return u * _per_channel(self.scale, u) + _per_channel(self.shift, u)

    def state(self) -> dict[str, Any]:
        """Plain data for a checkpoint: ``{"shift": [...], "scale": [...]}``."""
        return {"shift": self.shift.double().tolist(), "scale": self.scale.double().tolist()}

    @classmethod
    def from_state(cls, state: Any, channels: int) -> LatentScale:
        """The scale stored by :meth:`state`, checked against the latent's channel count."""
        try:
            shift = torch.tensor([float(v) for v in state["shift"]], dtype=torch.float64)
            scale = torch.tensor([float(v) for v in state["scale"]], dtype=torch.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"the stored latent scale is malformed ({err})") from err
        if shift.numel() != channels:
            raise ValueError(
                f"the stored latent scale has {shift.numel()} channels, the latent {channels}"
            )
        return cls(shift, scale)


@torch.no_grad()
def measure_latent_scale(
    encode: Callable[[Tensor], Tensor], data: Tensor, batch_size: int = 512
) -> LatentScale:
    """Per-channel mean and standard deviation of ``encode(data)`` over images and positions,
    accumulated in float64 (``batch_size`` images at a time)."""
    if data.ndim < 2 or len(data) < 2:
        raise ValueError(f"need at least two images to measure a scale, got {tuple(data.shape)}")
    total = total_sq = None
    count = 0
    for i in range(0, len(data), batch_size):
        z = encode(data[i : i + batch_size]).double()
        dims = [d for d in range(z.ndim) if d != 1]
        s, sq = z.sum(dims), z.square().sum(dims)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += math.prod(z.shape) // z.shape[1]
    mean = total / count
    var = (total_sq / count - mean.square()) * count / (count - 1)
    return LatentScale(mean.cpu(), var.clamp_min(1e-24).sqrt().cpu())
