"""The user's own vector data: rows of a ``.npy``, ``.npz`` or ``.csv`` file, shape ``(N, D)``.

``train_data=array train_data.path=points.csv`` trains on it. The rows are split once into a
training and a held-out part (a fixed permutation, ``split_seed``), and by default
standardised with the training part's per-column mean and standard deviation; the
:class:`Standardiser` is stored in the checkpoint, so samples come back in the data's units.
Every defect of the file is refused in one line that names it (and the first bad row).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["ArrayDataset", "Standardiser", "read_array"]

SUFFIXES = (".npy", ".npz", ".csv")


@dataclass(frozen=True)
class Standardiser:
    """z = (x - mean) / std per column; ``inverse`` maps model space back to data units."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def _t(self, x: Tensor) -> tuple[Tensor, Tensor]:
        kw = {"device": x.device, "dtype": x.dtype}
        return torch.tensor(self.mean, **kw), torch.tensor(self.std, **kw)

    def __call__(self, x: Tensor) -> Tensor:
        mean, std = self._t(x)
        return (x - mean) / std

    def inverse(self, z: Tensor) -> Tensor:
        mean, std = self._t(z)
        return z * std + mean

    @property
    def log_det(self) -> float:
        """log |det dz/dx| = -sum log std: log p(x) = log p_model(z) - sum log std."""
        return -sum(math.log(s) for s in self.std)

    def state(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_state(cls, state: Any, dim: int) -> Standardiser:
        """From a checkpoint's ``data_transform`` entry (plain lists), checked."""
        try:
            mean = tuple(float(v) for v in state["mean"])
            std = tuple(float(v) for v in state["std"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"data_transform is not a mean/std record: {err}") from err
        ok = len(mean) == len(std) == dim and all(math.isfinite(v) for v in mean + std)
        if not ok or min(std) <= 0:
            raise ValueError(f"data_transform must hold {dim} finite means and positive stds")
        return cls(mean, std)


def _csv_rows(path: Path) -> np.ndarray:
    rows: list[list[float]] = []
    with open(path, newline="") as f:
        for line, fields in enumerate(csv.reader(f), start=1):
            if not fields or all(not v.strip() for v in fields):
                continue
            try:
                rows.append([float(v) for v in fields])
            except ValueError:
                if line == 1 and not rows:
                    continue  # a header row
                bad = next(v for v in fields if not _is_float(v))
                raise ValueError(
                    f"train_data.path={str(path)!r}: line {line} is not numeric ({bad!r})"
                ) from None
            if len(rows[-1]) != len(rows[0]):
                raise ValueError(
                    f"train_data.path={str(path)!r}: line {line} has {len(rows[-1])} columns, "
                    f"the first data row has {len(rows[0])}"
                )
    return np.asarray(rows, dtype=np.float64)


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


#: an array of this name in a ``.npz`` holds the (N,) integer class of each row
LABELS_KEY = "labels"


def read_labels(path: str | Path, n: int) -> np.ndarray | None:
    """The ``labels`` array of a ``.npz`` (``(n,)`` non-negative integers), or None."""
    path = Path(str(path))
    if path.suffix != ".npz":
        return None
    with np.load(path, allow_pickle=False) as archive:
        if LABELS_KEY not in archive.files:
            return None
        lab = archive[LABELS_KEY]
    if lab.shape != (n,) or lab.dtype.kind not in "iub" or (n and lab.min() < 0):
        raise ValueError(
            f"train_data.path={str(path)!r}: 'labels' must be {n} non-negative integers, one "
            f"per row; got shape {lab.shape}, dtype {lab.dtype}"
        )
    return lab.astype(np.int64)


def read_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """The ``(N, D)`` float64 array of a ``.npy``, ``.npz`` (``key``) or ``.csv`` file; never
    unpickles (``allow_pickle=False``)."""
    path = Path(str(path))
    where = f"train_data.path={str(path)!r}"
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{where}: use a {', '.join(SUFFIXES)} file")
    if not path.is_file():
        raise FileNotFoundError(f"{where}: no such file")
    try:
        if path.suffix == ".csv":
            arr = _csv_rows(path)
        elif path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as archive:
                names = [n for n in archive.files if n != LABELS_KEY] or list(archive.files)
                if key is None and len(names) != 1:
                    raise ValueError(f"{where}: set train_data.key to one of {names}")
                name = names[0] if key is None else key
                if name not in names:
                    raise ValueError(f"{where}: no array {name!r}; it holds {names}")
                arr = archive[name]
    except (OSError, EOFError, ValueError) as err:  # numpy's refusal of pickles is a ValueError
        if str(err).startswith("train_data"):
            raise
        raise ValueError(f"{where}: cannot be read ({err})") from err
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{where}: the array is not numeric (dtype {arr.dtype})")
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(
            f"{where}: expected shape (N, D) with N >= 2, got {arr.shape}"
            + ("; a single column must be (N, 1)" if arr.ndim == 1 else "")
        )
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(
            f"{where}: row {i} is not finite ({arr[i].tolist()}); "
            f"{int((~finite).sum())} such row(s)"
        )
    return arr


class ArrayDataset(Dataset):
    """Rows of a user's array file as training (``split="train"``) or held-out data.

    Args:
        path: a ``.npy``, ``.npz`` or ``.csv`` file of shape ``(N, D)`` (a CSV may have one
            header row).
        key: the array's name in a ``.npz`` holding several.
        split: ``"train"`` or ``"test"``; ``test_fraction`` of the rows (by a fixed permutation,
            ``split_seed``) are held out.
        standardise: scale each column to mean 0 and std 1 with the training part's statistics.

    A ``.npz`` may also hold ``labels``, the integer class of each row (``labels``, split the
    same way), for class-conditional training.
    """

    scaler = None  # not images

    def __init__(
        self,
        path: str | None = None,
        key: str | None = None,
        split: str = "train",
        test_fraction: float = 0.1,
        split_seed: int = 0,
        standardise: bool = True,
    ) -> None:
        if path is None:
            raise ValueError("train_data.path is required: the .npy, .npz or .csv file to train on")
        if not isinstance(standardise, bool):
            raise ValueError(f"train_data.standardise must be true or false, got {standardise!r}")
        if split not in ("train", "test"):
            raise ValueError(f"train_data.split must be 'train' or 'test', got {split!r}")
        if not isinstance(test_fraction, int | float) or not 0 < test_fraction < 1:
            raise ValueError(f"train_data.test_fraction must lie in (0, 1), got {test_fraction!r}")
        arr = torch.from_numpy(read_array(path, key))
        perm = torch.randperm(len(arr), generator=torch.Generator().manual_seed(int(split_seed)))
        n_test = max(1, round(test_fraction * len(arr)))
        if len(arr) - n_test < 2:
            raise ValueError(f"train_data.path={path!r}: too few rows ({len(arr)}) to hold out")
        train, test = arr[perm[n_test:]], arr[perm[:n_test]]
        self.standardiser: Standardiser | None = None
        if standardise:
            std = train.std(dim=0)
            if bool((std <= 0).any()):
                col = int(torch.nonzero(std <= 0)[0])
                raise ValueError(
                    f"train_data.path={path!r}: column {col} is constant; it cannot be "
                    f"standardised (train_data.standardise=false, or drop the column)"
                )
            self.standardiser = Standardiser(tuple(train.mean(dim=0).tolist()), tuple(std.tolist()))
        rows = train if split == "train" else test
        lab = read_labels(path, len(arr))  # an optional 'labels' array of a .npz, split alike
        self.labels = (
            None
            if lab is None
            else torch.from_numpy(lab)[perm[n_test:] if split == "train" else perm[:n_test]]
        )
        self.raw = rows.float()  # data units
        self.data = (self.standardiser(rows) if self.standardiser else rows).float()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.data[index]
