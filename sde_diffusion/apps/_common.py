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


def run_app(
    fn: Callable[[], Any],
    out_dir: Path | None = None,
    context: dict | None = None,
    keep_going: bool = False,
) -> Any:
    """Run ``fn``; report a bad option or a failed run in one line, without a traceback.

    The failure and its reason go to ``out_dir/failure.json`` (never ``metrics.json``). A single
    run then exits with status 2; with ``keep_going`` (a job of a Hydra multirun) it returns,
    so the other jobs and the summary go on. ``SDE_DIFFUSION_DEBUG=1`` shows the traceback.
    """
    try:
        return fn()
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError, RuntimeError) as err:
        if os.environ.get("SDE_DIFFUSION_DEBUG"):
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if out_dir is not None:
            record = {**(context or {}), "error": message, "error_type": type(err).__name__}
            atomic_write_json(Path(out_dir) / "failure.json", record)
        print(f"error: {message}", file=sys.stderr)
        if keep_going:
            return None
        sys.exit(2)


def precheck_choices(argv: list[str], groups: dict[str, list[str]]) -> None:
    """Refuse ``group=name`` overrides naming no config, in one line, before Hydra composes.

    Comma lists (multirun sweeps such as ``solver=pc,ode``) are checked element by element.
    """
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in groups:
            continue
        for name in value.split(","):
            if name not in groups[key]:
                print(
                    f"error: {key}={name!r} is not a known {key}; choose one of "
                    f"{', '.join(groups[key])}",
                    file=sys.stderr,
                )
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


def set_threads(value: Any) -> None:
    """Apply the ``threads`` option (null keeps torch's default)."""
    if value is not None:
        torch.set_num_threads(check_int("threads", value, 1))


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
