"""Shared plumbing of the command-line apps: errors as one line, atomic writes, devices."""

from __future__ import annotations

import errno
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_open

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
    from ..training.signals import Interrupted, exit_code, interrupt_on_signals

    try:
        with interrupt_on_signals():  # SIGINT/SIGTERM: recorded as a failure, exit 130/143
            return fn()
    except Interrupted as err:  # not an Exception: a signal ends even a multirun
        _report(str(err), err.name, out_dir, context)
        sys.exit(exit_code(err.signum))
    except Exception as err:  # any failure is recorded as one, a KeyError or a full disk too
        if os.environ.get("SDE_DIFFUSION_DEBUG"):
            raise
        _report(describe(err), type(err).__name__, out_dir, context)
        if keep_going:
            return None
        sys.exit(2)


def _report(message: str, kind: str, out_dir: Path | None, context: dict | None) -> None:
    """``failure.json`` (when there is a run folder) and one line on stderr."""
    if out_dir is not None:
        record = {**(context or {}), "error": message, "error_type": kind}
        try:
            atomic_write_json(Path(out_dir) / "failure.json", record)
        except OSError:  # the disk that failed the run may refuse the record too
            pass
    print(f"error: {message}", file=sys.stderr)


#: failures whose message is the whole story; any other type is named in front of it
_PLAIN = (ValueError, TypeError, FileNotFoundError, FloatingPointError, RuntimeError)


def describe(err: BaseException) -> str:
    """One line for a failure: its message, an ``OSError``'s reason and file, or its type."""
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError | WriteError):
        reason = (err.strerror or str(err) or type(err).__name__).lower()
        return f"{reason}: {err.filename}" if err.filename else reason
    text = str(err).splitlines()[0] if str(err) else ""
    if isinstance(err, (*_PLAIN, WriteError)):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def precheck_choices(argv: list[str], groups: dict[str, list[str]]) -> None:
    """Refuse ``group=name`` overrides naming no config, in one line, before Hydra composes.

    Comma lists (multirun sweeps such as ``solver=pc,ode``) are checked element by element.
    """
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in groups:
            continue
        if value.lstrip().startswith("{"):
            print(
                f"error: {key} takes the name of a config in conf/{key}/, not an inline config; "
                f"to add one, put a YAML file naming its _target_ in conf/{key}/ "
                "(a source checkout), or build the object in Python",
                file=sys.stderr,
            )
            sys.exit(2)
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


#: the spellings a boolean option accepts (case-insensitive): YAML 1.1's pairs, and 1 / 0
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def check_bool(key: str, value: Any) -> bool:
    """A boolean option: ``True``/``False``, or one of :data:`TRUE_WORDS` / :data:`FALSE_WORDS`.

    Hydra reads ``denoise=no`` as the string ``"no"`` (which ``bool`` would make true) and
    ``denoise=1`` as an int; anything else (``maybe``, ``2``, null) is refused naming the key.
    """
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, str | int) else None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise UsageError(f"{key} must be true or false (also yes/no, on/off, 1/0), got {value!r}")


def check_float(
    key: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite number option within bounds (``above``: strictly greater than ``minimum``)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, bool) and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (minimum is None or (value > minimum if above else value >= minimum))
    ok = ok and (maximum is None or value <= maximum)
    if not ok:
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if above else '>='} {minimum}")
        if maximum is not None:
            bounds.append(f"<= {maximum}")
        rule = f"a number {' and '.join(bounds)}" if bounds else "a finite number"
        raise UsageError(f"{key} must be {rule}{' or null' if allow_none else ''}, got {value!r}")
    return float(value)


class WriteError(OSError):
    """An output that could not be written (full disk, no permission): its message names it."""

    def __str__(self) -> str:
        return str(self.strerror)


def atomic_save(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then rename it.

    A failed or interrupted write leaves the old file (or none), never a truncated one; a
    full disk or a refused write is raised as a one-line :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    try:
        with atomic_open(path, mode) as f:
            write(f)
    except BaseException as err:
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            code = err.errno or errno.EIO
            reason = os.strerror(code).lower()
            raise WriteError(code, f"{reason} writing {path}", str(path)) from err
        raise


def atomic_write_npz(path: Path, **arrays: Any) -> None:
    """``numpy.savez`` into ``path`` atomically (see :func:`atomic_save`)."""
    import numpy as np

    atomic_save(path, lambda f: np.savez(f, **arrays))


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to a temporary file in the same folder, then rename it into place."""

    def write(f: Any) -> None:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")

    atomic_save(path, write, "w")
