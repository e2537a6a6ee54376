"""Learning-rate and EMA schedules for the training loop.

Plain objects with number and string fields: ``LambdaLR`` saves their fields in its state,
so checkpoints stay loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["LR_DECAYS", "LinearWarmup", "WarmupDecay", "warmup_ema"]


class LinearWarmup:
    """Learning-rate factor min(1, (k + 1) / warmup) at scheduler step k (a plain object, so
    LambdaLR saves its fields and the checkpoint stays ``weights_only``-loadable)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = int(warmup)

    def __call__(self, k: int) -> float:
        return 1.0 if self.warmup <= 0 else min(1.0, (k + 1) / self.warmup)


LR_DECAYS = ("none", "cosine", "linear")


class WarmupDecay(LinearWarmup):
    """The warm-up factor times a decay over the steps after it, to ``final`` at step ``total``:

        p = clamp((k + 1 - warmup) / (total + 1 - warmup), 0, 1)   (k: steps taken)
        cosine: final + (1 - final) (1 + cos(pi p)) / 2   (Loshchilov & Hutter, 2017, Eq. 5)
        linear: 1 - (1 - final) p

    Its fields are plain numbers and a string, saved by LambdaLR in the checkpoint, so a resumed
    run decays to the same end as the run it continues.
    """

    def __init__(self, warmup: int, decay: str, total: int, final: float = 0.0) -> None:
        super().__init__(warmup)
        self.decay, self.total, self.final = str(decay), int(total), float(final)

    def __call__(self, k: int) -> float:
        span = max(self.total + 1 - max(self.warmup, 0), 1)
        p = min(max((k + 1 - max(self.warmup, 0)) / span, 0.0), 1.0)
        if self.decay == "cosine":
            d = self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * p))
        else:
            d = 1 - (1 - self.final) * p
        return super().__call__(k) * d


def warmup_ema(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """EMA update with decay min(decay, (1 + n) / (10 + n)) after n updates (the ``num_updates``
    warm-up of TensorFlow's ExponentialMovingAverage): early weights fade out of short runs.
    n is AveragedModel's ``n_averaged`` buffer, checkpointed, so resuming stays exact."""

    def update(ema: list[Tensor], current: list[Tensor], n: Tensor) -> None:
        d = torch.clamp((1 + n) / (10 + n), max=decay)  # a tensor: no host sync
        for e, c in zip(ema, current, strict=True):
            e.lerp_(c, (1 - d).to(e.dtype))

    return update
