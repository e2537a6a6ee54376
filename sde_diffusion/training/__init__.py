"""Training score models: the loop, checkpoints, the loss log, resumable batches, DDP set-up."""

from .checkpoint import CheckpointError, CheckpointManager, load_checkpoint, save_checkpoint
from .distributed import DistInfo, cleanup_distributed, init_distributed
from .log import TrainLogger, read_log
from .sampler import ShardedBatches
from .trained import TrainedModel, load_trained
from .trainer import LinearWarmup, Trainer

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "DistInfo",
    "LinearWarmup",
    "ShardedBatches",
    "TrainLogger",
    "TrainedModel",
    "Trainer",
    "cleanup_distributed",
    "init_distributed",
    "load_checkpoint",
    "load_trained",
    "read_log",
    "save_checkpoint",
]
