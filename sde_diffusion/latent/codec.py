"""An autoencoder with its latent scale: images <-> unit-variance latents, on any device/dtype."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .scale import LatentScale

__all__ = ["LatentCodec"]


class LatentCodec:
    """u = (E(x) - m) / s and x = D(s u + m): the latents a score model is trained on
    (:class:`~sde_diffusion.latent.scale.LatentScale`; Rombach et al., 2022, Sec. 3).

    Args:
        autoencoder: a module with ``encode(x)``, ``decode(z)`` and ``latent_shape(shape)``
            (:class:`~sde_diffusion.models.autoencoder.Autoencoder`, or the diffusers adapter).
        scale: the measured per-channel shift and scale of E(x) on the training set.
        data_shape: the image shape (C, H, W) it encodes.
        sha256, path: the file it was loaded from (None when built in memory).
    """

    def __init__(
        self,
        autoencoder: nn.Module,
        scale: LatentScale,
        data_shape: tuple[int, ...],
        sha256: str | None = None,
        path: str | None = None,
    ) -> None:
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.data_shape = tuple(int(s) for s in data_shape)
        self.latent_shape = tuple(int(s) for s in autoencoder.latent_shape(self.data_shape))
        if scale.channels != self.latent_shape[0]:
            raise ValueError(
                f"the latent scale has {scale.channels} channels, the latent shape is "
                f"{self.latent_shape}"
            )
        self.scale, self.sha256, self.path = scale, sha256, path

    def _module(self, like: Tensor) -> nn.Module:
        p = next(self.autoencoder.parameters())
        if p.device != like.device or p.dtype != like.dtype:
            self.autoencoder.to(device=like.device, dtype=like.dtype)
        return self.autoencoder

    def _check(self, x: Tensor, shape: tuple[int, ...], what: str) -> None:
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"{what} must have shape (n, {', '.join(map(str, shape))}), got "
                             f"{tuple(x.shape)}")  # fmt: skip

    @torch.no_grad()
    def encode(self, x: Tensor, batch_size: int = 512) -> Tensor:
        """Images (n, C, H, W) -> unit-variance latents (n, c, h, w), ``batch_size`` at a time."""
        self._check(x, self.data_shape, "images")
        if not x.is_floating_point():
            x = x.float()
        net = self._module(x)
        parts = [self.scale.normalise(net.encode(x[i : i + batch_size]))
                 for i in range(0, len(x), batch_size)]  # fmt: skip
        return torch.cat(parts) if parts else x.new_zeros((0, *self.latent_shape))

    @torch.no_grad()
    def decode(self, u: Tensor, batch_size: int = 512) -> Tensor:
        """Unit-variance latents (n, c, h, w) -> images (n, C, H, W)."""
        self._check(u, self.latent_shape, "latents")
        net = self._module(u)
        parts = [net.decode(self.scale.denormalise(u[i : i + batch_size]))
                 for i in range(0, len(u), batch_size)]  # fmt: skip
        return torch.cat(parts) if parts else u.new_zeros((0, *self.data_shape))

    def reference(self) -> dict[str, Any]:
        """What a latent score checkpoint records: the file, its sha256 and the two shapes."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "data_shape": list(self.data_shape),
            "latent_shape": list(self.latent_shape),
        }

    def __repr__(self) -> str:
        return (f"LatentCodec({type(self.autoencoder).__name__}, {self.data_shape} -> "
                f"{self.latent_shape}, sha256={str(self.sha256)[:12]})")  # fmt: skip
