"""Embeddings of the scalar noise conditioning c (one value per sample) into feature vectors."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

EMBEDDINGS = ("fourier", "sinusoidal")


def _check_dim(embed_dim: int) -> int:
    if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 2:
        raise ValueError(f"embed_dim must be an even integer >= 2, got {embed_dim!r}")
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even (half sines, half cosines), got {embed_dim}")
    return embed_dim


class GaussianFourierProjection(nn.Module):
    """[sin(2 pi c W), cos(2 pi c W)] with fixed random frequencies W ~ N(0, scale^2).

    Tancik et al. (2020), random Fourier features; used for the noise level in NCSN++
    (Song et al., 2021, App. H). W is a buffer: saved with the weights, never trained.
    """

    def __init__(self, embed_dim: int = 128, scale: float = 16.0) -> None:
        super().__init__()
        _check_dim(embed_dim)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"fourier_scale must be finite and > 0, got {scale!r}")
        self.register_buffer("W", torch.randn(embed_dim // 2) * scale)

    def forward(self, c: Tensor) -> Tensor:
        proj = 2 * math.pi * c[:, None] * self.W.to(c.dtype)[None, :]
        return torch.cat([proj.sin(), proj.cos()], dim=-1)


class SinusoidalEmbedding(nn.Module):
    """Transformer positional encoding of c: [cos(c w_k), sin(c w_k)], w_k = max_period^(-k/half).

    Vaswani et al. (2017), Sec. 3.5; the time embedding of DDPM (Ho et al., 2020, App. B).
    ``scale`` multiplies c first (DDPM feeds the step index 0..999).
    """

    def __init__(self, embed_dim: int = 128, max_period: float = 10_000.0, scale: float = 1.0):
        super().__init__()
        half = _check_dim(embed_dim) // 2
        if not (math.isfinite(max_period) and max_period > 1):
            raise ValueError(f"max_period must be finite and > 1, got {max_period!r}")
        freqs = torch.exp(-math.log(max_period) * torch.arange(half) / half)
        self.register_buffer("freqs", freqs)
        self.scale = float(scale)

    def forward(self, c: Tensor) -> Tensor:
        arg = self.scale * c[:, None] * self.freqs.to(c.dtype)[None, :]
        return torch.cat([arg.cos(), arg.sin()], dim=-1)


def make_embedding(kind: str, embed_dim: int, fourier_scale: float = 16.0) -> nn.Module:
    """The embedding named ``kind`` ("fourier" or "sinusoidal")."""
    if kind == "fourier":
        return GaussianFourierProjection(embed_dim, fourier_scale)
    if kind == "sinusoidal":
        return SinusoidalEmbedding(embed_dim)
    raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {kind!r}")


def noise_embedding(
    kind: str, embed_dim: int, out_dim: int, fourier_scale: float = 16.0
) -> nn.Sequential:
    """c -> Linear(SiLU(Linear(embedding(c)))): the noise embedding of the networks, ``out_dim``
    wide (DDPM's time-embedding MLP; Ho et al., 2020, App. B)."""
    return nn.Sequential(
        make_embedding(kind, embed_dim, fourier_scale),
        nn.Linear(embed_dim, out_dim),
        nn.SiLU(),
        nn.Linear(out_dim, out_dim),
    )


def check_condition(c: Tensor, batch: int) -> Tensor:
    """Return c of shape (B,), expanding a scalar; refuse other shapes."""
    if c.ndim == 0:
        return c.expand(batch)
    if tuple(c.shape) != (batch,):
        raise ValueError(f"c must be a scalar or of shape (B,) = ({batch},), got {tuple(c.shape)}")
    return c


def check_labels(y: Tensor, batch: int, num_classes: int) -> Tensor:
    """Return integer labels y of shape (B,) in 0 .. num_classes (num_classes: the null label).

    The range is checked for labels on the host only: on an accelerator that check would
    synchronise every network call, so code that binds labels for sampling checks them once.
    """
    if not isinstance(y, Tensor):
        raise ValueError(f"y must be a tensor of integer labels, got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer labels, got dtype {y.dtype}")
    if tuple(y.shape) != (batch,):
        raise ValueError(f"y must have shape (B,) = ({batch},), got {tuple(y.shape)}")
    if y.device.type == "cpu" and bool(((y < 0) | (y > num_classes)).any()):
        raise ValueError(
            f"labels must lie in 0 .. {num_classes - 1} (or {num_classes}, the null label), "
            f"got values in {int(y.min())} .. {int(y.max())}"
        )
    return y.long()


class LabelEmbedding(nn.Module):
    """A learned table of ``num_classes + 1`` vectors; the last row is the null label.

    Added to the noise embedding (class-conditional DDPM; Dhariwal & Nichol, 2021, Sec. 3;
    Ho & Salimans, 2022, where the null label makes one network serve s(x|y) and s(x) for
    classifier-free guidance). Zero-initialised, so an untrained conditional network starts
    as the unconditional one. ``y=None`` means the null label for the whole batch.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1 or null, got {num_classes!r}")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)
        nn.init.zeros_(self.table.weight)

    def forward(self, y: Tensor | None, batch: int) -> Tensor:
        if y is None:
            return self.table.weight[-1].expand(batch, -1)
        return self.table(check_labels(y, batch, self.num_classes).to(self.table.weight.device))


def label_embedding(num_classes: int | None, dim: int) -> LabelEmbedding | None:
    """``LabelEmbedding(num_classes, dim)``, or None for an unconditional network."""
    return None if num_classes is None else LabelEmbedding(num_classes, dim)


def no_labels(y: Tensor | None) -> None:
    """Refuse labels given to an unconditional network (built with ``num_classes=None``)."""
    if y is not None:
        raise ValueError(
            "this network is unconditional (num_classes=null): it takes no labels y; "
            "train it with model.num_classes set"
        )
