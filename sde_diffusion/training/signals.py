"""Stopping cleanly on SIGINT (Ctrl-C) and SIGTERM (what ``timeout``, SLURM and Kubernetes send).

Two behaviours, both as context managers that restore the previous handlers on exit:

- :func:`stop_requests`: a signal only *asks* to stop; the training loop polls the request
  after each step, finishes it, saves a checkpoint and returns. A second Ctrl-C raises
  ``KeyboardInterrupt`` at once, for a user who really wants out.
- :func:`interrupt_on_signals`: SIGTERM raises :class:`Interrupted` like Ctrl-C raises
  ``KeyboardInterrupt``, so that an app can record the failure instead of dying silently.

Handlers can only be installed from the main thread; elsewhere both are no-ops.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Interrupted", "StopRequest", "exit_code", "interrupt_on_signals", "stop_requests"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A run stopped by a signal; ``signum`` is the signal, ``message`` says what was kept."""

    def __init__(self, signum: int, message: str = "") -> None:
        name = signal.Signals(signum).name
        super().__init__(message or f"interrupted by {name}")
        self.signum = signum
        self.name = name


def exit_code(signum: int) -> int:
    """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(signum)


class StopRequest:
    """Whether a stop was asked for, and by which signal (``signum``; ``None`` if not)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set the returned :class:`StopRequest`."""
    request = StopRequest()
    if not _main_thread():
        yield request
        return

    def handler(signum: int, frame: object) -> None:
        if request.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C
        request.signum = signum

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` (SIGINT raises it too, in place of
    ``KeyboardInterrupt``, so that both take one path)."""
    if not _main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
