"""The one place where data are scaled: integer pixels <-> the model's data space.

x = low + (high - low) v / max_value maps pixel values v in [0, max_value] onto [low, high].
The affine map is a :class:`~sde_diffusion.bits_per_dim.DataScaling` (x = a v + b), so the
same object gives the Jacobian term of bits/dim (Theis et al., 2016, Sec. 3.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..bits_per_dim import DataScaling


@dataclass(frozen=True)
class ImageScaler:
    """x = a v + b with a = (high - low) / max_value, b = low; ``inverse`` and ``to_pixels`` undo it.

    Args:
        low, high: the data range, low < high (default [-1, 1], Song et al., 2021).
        max_value: the largest pixel value (255 for 8-bit images, 16 for the 8x8 digits).
    """

    low: float = -1.0
    high: float = 1.0
    max_value: float = 255.0
    scaling: DataScaling = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("low", "high", "max_value"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if not self.low < self.high:
            raise ValueError(f"need low < high, got low={self.low}, high={self.high}")
        if not self.max_value > 0:
            raise ValueError(f"max_value must be > 0, got {self.max_value}")
        scale = (self.high - self.low) / self.max_value
        object.__setattr__(self, "scaling", DataScaling(scale=scale, shift=float(self.low)))

    def forward(self, v: Tensor) -> Tensor:
        """Pixels v (any real or integer dtype) to x = a v + b, as floats."""
        if not v.is_floating_point():
            v = v.to(torch.get_default_dtype())
        return self.scaling(v)

    __call__ = forward

    def inverse(self, x: Tensor) -> Tensor:
        """v = (x - b) / a, unclamped floats."""
        return self.scaling.inverse(x)

    def to_pixels(self, x: Tensor) -> Tensor:
        """Nearest valid pixel values: round(clamp(v, 0, max_value)), as floats; e.g. for figures."""
        return self.inverse(x).clamp(0, self.max_value).round()

    def to_unit(self, x: Tensor) -> Tensor:
        """x mapped to [0, 1] (clamped), the range image-saving libraries expect."""
        return ((x - self.low) / (self.high - self.low)).clamp(0, 1)
