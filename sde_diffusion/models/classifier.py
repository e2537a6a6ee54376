"""A small noise-conditional image classifier: the U-Net's residual blocks, then pooling.

F(x, c) -> logits ``(B, num_classes)``, with the noise embedding in every block, as the
encoder half of the U-Net (Dhariwal & Nichol, 2021, Sec. 4: the classifier for guidance is the
downsampling trunk of the U-Net with attention pooling; here a mean pool). For vectors, an
:class:`~sde_diffusion.models.MLP` with ``out_dim=num_classes`` serves.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .embedding import check_condition, noise_embedding
from .unet import ResBlock, _ints, _norm


class ImageClassifier(nn.Module):
    """Logits F(x, c): (B, C, H, W) -> (B, num_classes), conditioned on the noise level c.

    Args:
        in_channels: image channels C.
        resolution: image size H = W, divisible by 2^(len(ch_mult) - 1).
        num_classes: the number of classes.
        ch: base width; level i has ch * ch_mult[i] channels, one residual block per level.
        ch_mult: width multipliers, halving the resolution between levels.
        embedding: "fourier" or "sinusoidal" embedding of c (size ``ch``; blocks get 4 * ch).
    """

    def __init__(
        self,
        in_channels: int = 1,
        resolution: int = 8,
        num_classes: int = 10,
        ch: int = 32,
        ch_mult: tuple[int, ...] = (1, 2),
        embedding: str = "fourier",
    ) -> None:
        super().__init__()
        for name, value in [
            ("in_channels", in_channels),
            ("resolution", resolution),
            ("num_classes", num_classes),
            ("ch", ch),
        ]:
            _ints(name, [value], 1)
        ch_mult = _ints("ch_mult", ch_mult, 1)
        if not ch_mult or resolution % 2 ** (len(ch_mult) - 1):
            raise ValueError(
                f"resolution {resolution} must be divisible by 2^(len(ch_mult) - 1) for "
                f"ch_mult={ch_mult}"
            )
        self.in_channels, self.resolution, self.num_classes = in_channels, resolution, num_classes
        temb = 4 * ch
        self.embed = noise_embedding(embedding, ch, temb)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.blocks = nn.ModuleList()
        c = ch
        for mult in ch_mult:
            self.blocks.append(ResBlock(c, ch * mult, temb, 0.0))
            c = ch * mult
        self.norm = _norm(c)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        C, R = self.in_channels, self.resolution
        if x.ndim != 4 or tuple(x.shape[1:]) != (C, R, R):
            raise ValueError(
                f"ImageClassifier expects images of shape (B, {C}, {R}, {R}), got {tuple(x.shape)}"
            )
        temb = self.embed(check_condition(c, x.shape[0]).to(x.dtype))
        h = self.conv_in(x)
        for i, block in enumerate(self.blocks):
            if i:
                h = F.avg_pool2d(h, 2)
            h = block(h, temb)
        return self.head(F.silu(self.norm(h)).mean(dim=(2, 3)))
