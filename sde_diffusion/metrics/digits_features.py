"""A small CNN classifier on the bundled 8x8 digits: its penultimate layer gives image features.

The weights ship in the package (``digits_features.pt``, trained by
``python -m sde_diffusion.metrics.train_digits_features`` with a fixed seed) and load with
``torch.load(weights_only=True)`` after a CRC check of the archive and a check of the sha256
digest recorded beside them. The file also records the held-out accuracy on
``DigitsDataset(split="test")``, which the tests recompute.
"""

from __future__ import annotations

import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .features import weights_digest

__all__ = ["DigitsCNN", "digits_features", "load_digits_cnn"]

IMAGE_SHAPE = (1, 8, 8)
N_CLASSES = 10
FEATURE_DIM = 64
RANGE_SLACK = 0.1  #: values in [-1.1, 1.1] are clamped to [-1, 1]; anything further is refused
WEIGHTS_FILE = "digits_features.pt"


class DigitsCNN(nn.Module):
    """conv3x3(32) - conv3x3(64) - pool - conv3x3(64) - pool - fc(64) - ReLU - fc(10).

    Input: images ``(n, 1, 8, 8)`` in the data space of ``DigitsDataset`` ([-1, 1]).
    ``forward`` returns the features: the 64 outputs of the penultimate layer fc(64) before its
    ReLU (every unit informative; after the ReLU 27 of 64 are always 0), times the fixed
    ``feature_scale`` that makes mean |f|^2 / 64 = 1 on the training split (so the KID kernel
    (x . y / d + 1)^3 sees O(1) products, as with Inception features). ``logits`` gives the
    classes. 72,842 parameters (285 KiB in float32).
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(256, FEATURE_DIM),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(FEATURE_DIM, N_CLASSES))
        self.register_buffer("feature_scale", torch.ones((), dtype=torch.float32))

    def check_images(self, x: Tensor) -> Tensor:
        """Refuse the wrong shape or range in one line; clamp the slack to [-1, 1]."""
        if not isinstance(x, Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"digits features need images of shape (n, 1, 8, 8), got {shape}")
        if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
            raise ValueError("digits features need finite floating-point images in [-1, 1]")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
            raise ValueError(
                f"digits features need images in [-1, 1] (DigitsDataset's data space; scale "
                f"pixels 0..16 with dataset.scaler, clamp samples), got values in [{lo:.3g}, {hi:.3g}]"
            )
        return x.clamp(-1, 1)

    def _pre(self, x: Tensor) -> Tensor:
        return self.body(self.check_images(x).to(self.feature_scale.dtype))

    def forward(self, x: Tensor) -> Tensor:
        """The features ``(n, 64)``: fc(64) before its ReLU, times ``feature_scale``."""
        return self._pre(x) * self.feature_scale

    def logits(self, x: Tensor) -> Tensor:
        """Class logits ``(n, 10)``."""
        return self.head(self._pre(x))


def _default_path() -> Path:
    return Path(str(resources.files(__package__).joinpath(WEIGHTS_FILE)))


def load_digits_cnn(path: str | Path | None = None) -> tuple[DigitsCNN, dict[str, Any]]:
    """The network and its metadata (``digest``, ``test_accuracy``, ``n_test``, ``seed``, ...)
    from ``path`` (default: the shipped file). A missing, corrupt or altered file is refused."""
    path = _default_path() if path is None else Path(path)
    if not path.is_file():
        raise ValueError(
            f"digits feature weights {str(path)!r}: no such file (rebuild it with "
            f"python -m sde_diffusion.metrics.train_digits_features)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"record {bad!r} fails its CRC check")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        net = DigitsCNN()
        net.load_state_dict(blob["state_dict"])
        meta = dict(blob["meta"])
    except Exception as err:
        raise ValueError(
            f"digits feature weights {str(path)!r} are corrupt or not this network "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    digest = weights_digest(net)
    if meta.get("digest") != digest:
        raise ValueError(
            f"digits feature weights {str(path)!r} do not match their recorded digest "
            f"(the file was changed after training)"
        )
    return net.eval().requires_grad_(False), meta


def digits_features(path: str | Path | None = None) -> tuple[DigitsCNN, str]:
    """``(module, digest)``: the digits feature network (``module(images)`` -> ``(n, 64)``,
    ``module.logits(images)`` -> ``(n, 10)``) and the sha256 digest that names it in statistics."""
    net, meta = load_digits_cnn(path)
    return net, meta["digest"]
