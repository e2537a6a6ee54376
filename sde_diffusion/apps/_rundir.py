"""One run per run directory: a lock file against concurrent runs, no stale results mixed in.

- ``<run dir>/.lock`` is created exclusively and holds ``<pid> <host>``. A second run into the
  same directory is refused while that process lives; a lock left by a process that died
  (kill -9, power loss) on this host is stale and taken over. It is removed at exit, on
  error too.
- A directory that already holds an app's results is refused (one line); ``overwrite=true``
  deletes those results before the run starts, so that a rerun killed halfway can never
  leave an old ``metrics.json`` beside new samples.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._common import UsageError, check_bool, run_app

LOCK = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _holder(text: str) -> tuple[int, str] | None:
    fields = text.split()
    if len(fields) != 2 or not fields[0].isdigit():
        return None
    return int(fields[0]), fields[1]


def check_unlocked(run_dir: Path) -> None:
    """Refuse a folder that a live run on this host holds (the app's own ``acquire`` repeats
    this atomically later; this earlier look keeps Hydra from rewriting the run's ``.hydra/``)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun rank 0 takes the lock, perhaps already: not a second run
    try:
        seen = (Path(run_dir) / LOCK).read_text()
    except OSError:
        return
    holder = _holder(seen)
    if holder and holder[1] == socket.gethostname() and holder[0] != os.getpid():
        if _alive(holder[0]):
            raise UsageError(
                f"{run_dir} is in use by another run (pid {holder[0]} on {holder[1]}; lock file "
                f"{Path(run_dir) / LOCK}): wait for it to finish, or choose another hydra.run.dir"
            )


def acquire(run_dir: Path) -> Path | None:
    """Take ``run_dir/.lock``; return its path, or ``None`` if this process holds it already.

    Raises :class:`UsageError` while another live process holds it.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                seen = path.read_text()
            except FileNotFoundError:
                continue  # released meanwhile: try again
            holder = _holder(seen)
            if seen == me:
                return None
            if holder is None or holder[1] != socket.gethostname() or _alive(holder[0]):
                who = f"pid {holder[0]} on {holder[1]}" if holder else "a run starting now"
                raise UsageError(
                    f"{run_dir} is in use by another run ({who}; lock file {path}): wait for "
                    "it to finish, or choose another hydra.run.dir"
                ) from None
            _take_over(path, seen)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return path
    raise UsageError(f"could not lock {run_dir} ({path} keeps changing): try again")


def _take_over(path: Path, seen: str) -> None:
    """Remove a stale lock, unless another run replaced it since it was read."""
    aside = path.with_name(f"{LOCK}.stale.{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    if aside.read_text() != seen:  # another run took it over first: give it back
        os.replace(aside, path)
        raise UsageError(f"{path.parent} is in use by another run (lock file {path})")
    aside.unlink()


def release(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            if path.read_text() == f"{os.getpid()} {socket.gethostname()}":
                path.unlink()


def clear_results(run_dir: Path, outputs: tuple[str, ...], overwrite: bool) -> None:
    """Refuse a directory holding any of ``outputs``, or delete them when ``overwrite``."""
    found = [name for name in outputs if (run_dir / name).exists()]
    if found and not overwrite:
        raise UsageError(
            f"{run_dir} already holds results ({', '.join(found)}): pass overwrite=true to "
            "replace them, or choose another hydra.run.dir"
        )
    for name in found:
        (run_dir / name).unlink()


def run_in_dir(
    fn: Callable[[], Any],
    run_dir: Path,
    outputs: tuple[str, ...],
    overwrite: Any,
    context: dict | None = None,
    keep_going: bool = False,
    lock: bool = True,
) -> Any:
    """:func:`run_app` inside ``run_dir``'s lock, after refusing or clearing old results.

    A refusal writes nothing into the directory (no ``failure.json``: it is someone else's).
    ``lock=False``: run without the lock (a process other than rank 0 under torchrun).
    """
    try:
        path = acquire(run_dir) if lock else None
    except UsageError as err:
        return _refuse(err, keep_going)
    try:
        try:
            clear_results(run_dir, outputs, check_bool("overwrite", overwrite))
        except UsageError as err:
            return _refuse(err, keep_going)
        return run_app(fn, run_dir, context, keep_going)
    finally:
        release(path)


def _refuse(err: UsageError, keep_going: bool) -> None:
    print(f"error: {err}", file=sys.stderr)
    if not keep_going:
        sys.exit(2)
    return None
