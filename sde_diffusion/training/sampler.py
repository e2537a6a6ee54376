"""Resumable shuffled mini-batches: the order is a function of a seed and a position only."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["ShardedBatches"]


class ShardedBatches:
    """Index batches drawn without replacement, epoch after epoch, from one rank's shard.

    Rank ``r`` of ``world_size`` owns the indices ``r, r + world_size, ...`` of a data set of
    ``n`` items; each epoch is a fresh permutation of the shard from a private
    ``torch.Generator``. The generator state, the current permutation and the position in it
    are the whole state, so a resumed run draws exactly the batches an uninterrupted one would.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.shard = torch.arange(rank, n, world_size)
        if len(self.shard) == 0:
            raise ValueError(f"the data set ({n} items) is empty for rank {rank} of {world_size}")
        if drop_last and batch_size > len(self.shard):
            raise ValueError(
                f"batch_size={batch_size} is larger than the data set ({len(self.shard)} items "
                f"per process) with drop_last=true; lower batch_size or set drop_last=false"
            )
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.empty(0, dtype=torch.long)
        self.pos = 0
        self.epoch = 0

    def next(self) -> Tensor:
        """The next batch of indices (CPU, int64)."""
        left = len(self.perm) - self.pos
        if left <= 0 or (self.drop_last and left < self.batch_size):
            self.perm = self.shard[torch.randperm(len(self.shard), generator=self.generator)]
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += len(idx)
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "perm": self.perm.clone(),
            "pos": self.pos,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.perm = state["perm"].clone()
        self.pos = int(state["pos"])
        self.epoch = int(state["epoch"])
