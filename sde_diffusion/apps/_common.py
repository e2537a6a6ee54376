"""Shared plumbing of the command-line apps: errors as one line, atomic writes, devices."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class UsageError(ValueError):
    """A bad option on the command line: reported in one line, exit status 2."""


def run_app(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; turn a ``ValueError``/``FileNotFoundError`` into one line on stderr and exit 2.

    Set ``SDE_DIFFUSION_DEBUG=1`` to see the traceback instead.
    """
    try:
        return fn()
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as err:
        if os.environ.get("SDE_DIFFUSION_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"device={name!r} is not a device; use cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device={name!r} but CUDA is not available here; use device=cpu")
    return device


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise UsageError(f"dtype={name!r} is not allowed; use one of {sorted(DTYPES)}")
    return DTYPES[name]


def check_int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
