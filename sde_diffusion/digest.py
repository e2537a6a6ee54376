"""sha256 digests that name files and tensors in caches and checkpoints."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["file_sha256", "tensor_sha256"]


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of the file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tensor_sha256(*tensors: Tensor) -> str:
    """sha256 (hex) of each tensor's dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for x in tensors:
        t = x.detach().cpu().contiguous()
        h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
