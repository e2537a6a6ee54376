"""A compact DDPM++/NCSN++-style U-Net for images, conditioned on a noise embedding.

Residual blocks with group norm and the embedding added in every block, self-attention at
chosen resolutions, skip connections between the two halves, residual sums rescaled by
1/sqrt(2). Ho et al. (2020), App. B; Song et al. (2021), App. H (DDPM++ / NCSN++).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embedding import check_condition, label_embedding, no_labels, noise_embedding

_SKIP_SCALE = 1 / math.sqrt(2)


def _norm(channels: int) -> nn.GroupNorm:
    """Group norm with at most 32 groups of at least 4 channels each (never instance norm)."""
    groups = next(g for g in range(min(32, max(1, channels // 4)), 0, -1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """(skip(x) + conv(SiLU((1 + a) GN(conv(SiLU(GN(x)))) + b))) / sqrt(2), (a, b) = E temb.

    The embedding enters as a scale and shift after the group norm (adaptive group norm,
    Dhariwal & Nichol, 2021, Sec. 3), so normalisation cannot remove it.
    """

    def __init__(self, c_in: int, c_out: int, temb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(temb_dim, 2 * c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(temb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(self.drop(F.silu(torch.addcmul(shift, self.norm2(h), 1 + scale))))
        return (self.skip(x) + h) * _SKIP_SCALE


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, residual, rescaled by 1/sqrt(2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(2, 3).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        h = self.proj(h.transpose(1, 2).reshape(B, C, H, W))
        return (x + h) * _SKIP_SCALE


class _Level(nn.Module):
    """A residual block, followed by attention at the listed resolutions."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int, dropout: float, attn: bool):
        super().__init__()
        self.res = ResBlock(c_in, c_out, temb_dim, dropout)
        self.attn = AttnBlock(c_out) if attn else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        return self.attn(self.res(x, temb))


def _ints(name: str, values: object, low: int) -> tuple[int, ...]:
    try:
        out = tuple(values)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integers, got {values!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in out):
        raise ValueError(f"{name} must hold integers >= {low}, got {values!r}")
    return out


class UNet(nn.Module):
    """F(x, c): (B, C, H, W) -> (B, C, H, W), a U-Net with the noise embedding in every block.

    The network knows nothing about noise; ``c`` is the conditioning the wrapper passes.

    Args:
        in_channels: image channels C (1 grey, 3 colour).
        resolution: image size H = W; divisible by 2^(len(ch_mult) - 1).
        ch: base width; level i has ch * ch_mult[i] channels.
        ch_mult: width multipliers, one level per entry, halving the resolution between levels.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: feature-map sizes at which self-attention follows each block.
        dropout: dropout probability inside residual blocks, in [0, 1).
        embedding: "fourier" or "sinusoidal" embedding of c.
        embed_dim: size of that embedding (default ``ch``); the block embedding has 4 * ch.
        num_classes: None (unconditional, as in earlier versions) or the number of classes: a
            learned label embedding (num_classes + 1 rows, the last the null label, also used
            for ``y=None``) is added to the block embedding (Dhariwal & Nichol, 2021, Sec. 3).
    """

    def __init__(
        self,
        in_channels: int = 1,
        resolution: int = 32,
        ch: int = 64,
        ch_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        dropout: float = 0.1,
        embedding: str = "fourier",
        embed_dim: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in [
            ("in_channels", in_channels),
            ("resolution", resolution),
            ("ch", ch),
            ("num_res_blocks", num_res_blocks),
        ]:
            _ints(name, [value], 1)
        ch_mult = _ints("ch_mult", ch_mult, 1)
        if not ch_mult:
            raise ValueError("ch_mult must hold at least one level")
        factor = 2 ** (len(ch_mult) - 1)
        if resolution % factor:
            raise ValueError(
                f"resolution must be divisible by 2^(len(ch_mult) - 1) = {factor} for "
                f"ch_mult={ch_mult}, got {resolution}"
            )
        sizes = [resolution // 2**i for i in range(len(ch_mult))]
        attn_resolutions = _ints("attn_resolutions", attn_resolutions, 1)
        if any(r not in sizes for r in attn_resolutions):
            raise ValueError(
                f"attn_resolutions must be among the feature-map sizes {sizes}, "
                f"got {attn_resolutions}"
            )
        if not (0 <= dropout < 1):
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        embed_dim = ch if embed_dim is None else embed_dim
        self.in_channels, self.resolution = in_channels, resolution
        temb_dim = 4 * ch
        self.embed = noise_embedding(embedding, embed_dim, temb_dim)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, c = [ch], ch
        for i, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                self.down.append(
                    _Level(c, ch * mult, temb_dim, dropout, sizes[i] in attn_resolutions)
                )
                c = ch * mult
                skips.append(c)
            if i < len(ch_mult) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList(
            [_Level(c, c, temb_dim, dropout, True), _Level(c, c, temb_dim, dropout, False)]
        )
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                c_skip = skips.pop()
                self.up.append(
                    _Level(c + c_skip, ch * mult, temb_dim, dropout, sizes[i] in attn_resolutions)
                )
                c = ch * mult
            if i > 0:
                self.up.append(
                    nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(c, c, 3, padding=1))
                )
        self.out = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, in_channels, 3, padding=1))
        self.num_classes = num_classes
        self.label_embed = label_embedding(num_classes, temb_dim)  # last: other weights unchanged

    def forward(self, x: Tensor, c: Tensor, y: Tensor | None = None) -> Tensor:
        C, R = self.in_channels, self.resolution
        if x.ndim != 4:
            raise ValueError(
                f"UNet expects images of shape (B, {C}, {R}, {R}), got {tuple(x.shape)}; "
                "use the MLP for low-dimensional data"
            )
        if x.shape[1] != C:
            raise ValueError(
                f"UNet(in_channels={C}) got images with {x.shape[1]} channels, shape {tuple(x.shape)}"
            )
        if tuple(x.shape[2:]) != (R, R):
            raise ValueError(
                f"UNet(resolution={R}) expects {R}x{R} images, got {tuple(x.shape[2:])}"
            )
        temb = self.embed(check_condition(c, x.shape[0]).to(x.dtype))
        if self.label_embed is None:
            no_labels(y)
        else:
            temb = temb + self.label_embed(y, x.shape[0]).to(temb.dtype)
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, temb) if isinstance(layer, _Level) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, temb)
        for layer in self.up:
            if isinstance(layer, _Level):
                h = layer(torch.cat([h, hs.pop()], dim=1), temb)
            else:
                h = layer(h)
        return self.out(h)
