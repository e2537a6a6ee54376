"""Atomic file writes: a temporary file beside the target, then ``os.replace``.

A reader sees the old file or the whole new one, never a part; a failed or killed write leaves
no partial target (an orphaned ``.<name>.*.tmp`` at worst, which resume removes for
checkpoints). The new file gets the usual mode (0666 less the umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open"]


def _usual_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_open(
    path: str | Path, mode: str = "wb", *, fsync: bool = False, **kwargs: Any
) -> Iterator[IO[Any]]:
    """``with atomic_open(path, "w") as f: ...``: ``path`` appears, complete, when the block
    ends without an exception; ``fsync`` flushes it to the disk first (checkpoints)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _usual_mode())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
