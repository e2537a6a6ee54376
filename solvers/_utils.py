"""Small tensor helpers shared by the solvers."""

from __future__ import annotations

from torch import Tensor


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append singleton dimensions to ``v`` until it has ``ndim`` dimensions."""
    extra = ndim - v.ndim
    if extra < 0:
        raise ValueError(f"cannot broadcast a tensor of rank {v.ndim} to rank {ndim}")
    return v.reshape(*v.shape, *([1] * extra))


def batch_time(t: Tensor, x: Tensor) -> Tensor:
    """Expand a scalar time to shape ``(B,)`` on the device and dtype of ``x``."""
    return t.to(device=x.device, dtype=x.dtype).expand(x.shape[0])
