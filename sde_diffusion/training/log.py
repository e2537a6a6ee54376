"""The loss log: ``train_log.csv`` always, TensorBoard too when it is installed."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "TrainLogger", "read_log"]

log = logging.getLogger(__name__)

COLUMNS = ("step", "loss", "lr", "steps_per_s", "elapsed_s")


def read_log(path: str | Path) -> list[dict[str, float]]:
    """The rows of a ``train_log.csv`` as dicts of floats (``step`` as int)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(v) if k == "step" else float(v)) for k, v in r.items()} for r in rows]


class TrainLogger:
    """Append rows of ``COLUMNS`` to ``out_dir/train_log.csv``; mirror them to TensorBoard.

    ``resume_step``: rows after that step (written after the checkpoint the run resumes from)
    are dropped, so that the resumed log has each step once.
    """

    def __init__(
        self, out_dir: str | Path, resume_step: int | None = None, tensorboard: bool = True
    ) -> None:
        self.path = Path(out_dir) / "train_log.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.debug("tensorboard is not installed: logging to train_log.csv only")
            else:
                self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"))

    def log(self, step: int, loss: float, lr: float, steps_per_s: float, elapsed_s: float) -> None:
        row = {
            "step": step,
            "loss": repr(float(loss)),
            "lr": repr(float(lr)),
            "steps_per_s": f"{steps_per_s:.4g}",
            "elapsed_s": f"{elapsed_s:.3f}",
        }
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writerow(row)
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)
            self.writer.add_scalar("train/steps_per_s", steps_per_s, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
