"""Checkpoints: atomic writes (temporary file, then rename), safe loads, keep the last K.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``: no pickled code runs when a file is read.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_open

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "load_checkpoint",
    "require",
    "save_checkpoint",
]

_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: corrupt, truncated or not a checkpoint."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then
    ``os.replace``. A failure (full disk, an unsaveable object, a kill) leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb", fsync=True) as f:
        torch.save(state, f)
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); a bad file raises
    :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r}: no such file")
    _check_crc(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # zipfile, unpickling and EOF errors all mean the same here
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt, truncated or not a checkpoint "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a training checkpoint (no 'step'/'model' entries)"
        )
    return state


def _check_crc(path: Path) -> None:
    """Every record of the zip archive that ``torch.save`` wrote carries a CRC-32; a file whose
    bytes were changed in place (a flipped bit, an overwritten block) fails it, where
    ``torch.load`` alone would read the altered weights without a word."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt, truncated or not a checkpoint "
            f"(not a readable archive: {err})"
        ) from err
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt: its record {bad!r} fails its CRC check "
            f"(the file was changed after it was written)"
        )


def require(state: dict[str, Any], keys: tuple[str, ...], path: str | Path) -> None:
    """Refuse a checkpoint that lacks any of ``keys``, naming them."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r} lacks {', '.join(map(repr, missing))}: it is incomplete "
            f"or was not written by sde-train"
        )


class CheckpointManager:
    """``directory/ckpt_<step>.pt`` files: save atomically, keep the newest ``keep_last``."""

    def __init__(self, directory: str | Path, keep_last: int = 3) -> None:
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
            raise ValueError(f"keep_last must be an integer >= 1, got {keep_last!r}")
        self.directory = Path(directory)
        self.keep_last = keep_last

    def path(self, step: int) -> Path:
        return self.directory / f"ckpt_{step:08d}.pt"

    def list(self) -> list[Path]:
        """Checkpoint files, oldest first (by step)."""
        if not self.directory.is_dir():
            return []
        found = [
            (int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.match(p.name))
        ]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        files = self.list()
        return files[-1] if files else None

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write the checkpoint of ``step``, then delete all but the newest ``keep_last``."""
        path = save_checkpoint(self.path(step), state)
        for old in self.list()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path
