"""Features and their statistics, kept apart: an extractor is a plain ``nn.Module``; statistics
record the extractor that made them (a sha256 digest of its weights) and are refused against
statistics of another.

Reference statistics are cached in an ``.npz`` (plain arrays and strings, read with
``allow_pickle=False``: nothing read from the file is code).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..atomic import atomic_open
from .floor import NoiseFloor

__all__ = [
    "FeatureStatistics",
    "extract_features",
    "feature_floor",
    "feature_statistics",
    "load_statistics",
    "save_statistics",
    "weights_digest",
]


def weights_digest(module: nn.Module) -> str:
    """sha256 (hex) of the module's ``state_dict``: every entry's name, dtype, shape and bytes,
    in sorted order. Equal weights give equal digests whatever file they came from."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def extract_features(extractor: nn.Module, images: Tensor, batch_size: int = 500) -> Tensor:
    """``extractor(images)`` in eval mode, ``batch_size`` images at a time: ``(n, d)`` float64 on
    the CPU. The extractor runs on the device of its parameters; it checks its own input."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(images, Tensor) or images.ndim < 1 or images.shape[0] < 1:
        raise ValueError("images must be a tensor of shape (n, C, H, W) with n >= 1")
    extractor.eval()
    param = next(extractor.parameters(), None)
    device = param.device if param is not None else images.device
    out = [
        extractor(images[i : i + batch_size].to(device)).reshape(
            min(batch_size, images.shape[0] - i), -1
        )
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(out).to(device="cpu", dtype=torch.float64)


@dataclass(frozen=True, eq=False)  # arrays: no element-wise ==
class FeatureStatistics:
    """Mean ``(d,)`` and covariance ``(d, d)`` (float64, unbiased, divisor n - 1) of n feature
    vectors, and the ``extractor`` digest (:func:`weights_digest`) of the network that made them."""

    mean: np.ndarray
    cov: np.ndarray
    n: int
    extractor: str

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def check_same_extractor(self, other: FeatureStatistics) -> None:
        """Refuse statistics made by another extractor (their numbers are not comparable)."""
        if self.extractor != other.extractor:
            raise ValueError(
                f"statistics from different feature extractors (digest {self.extractor[:12]} "
                f"against {other.extractor[:12]}): compute both with the same extractor"
            )
        if self.dim != other.dim:
            raise ValueError(f"feature dimensions differ: {self.dim} against {other.dim}")


def _features_2d(features: Tensor | np.ndarray, name: str = "features") -> np.ndarray:
    f = features.detach().cpu().numpy() if isinstance(features, Tensor) else np.asarray(features)
    if f.ndim != 2 or f.shape[0] < 1 or f.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, d), got {tuple(f.shape)}")
    f = f.astype(np.float64, copy=False)
    if not np.isfinite(f).all():
        raise ValueError(f"{name} must be finite")
    return f


def feature_statistics(features: Tensor | np.ndarray, extractor_digest: str) -> FeatureStatistics:
    """Mean and covariance of ``features`` ``(n, d)`` in float64; n must exceed d (a covariance
    from n <= d vectors is singular and the Frechet distance is meaningless)."""
    f = _features_2d(features)
    n, d = f.shape
    if n <= d:
        raise ValueError(
            f"a covariance of {d}-dimensional features needs n > {d} samples, got n = {n}"
        )
    if not isinstance(extractor_digest, str) or not extractor_digest:
        raise ValueError("extractor_digest must be a non-empty string (see weights_digest)")
    return FeatureStatistics(f.mean(0), np.cov(f, rowvar=False), n, extractor_digest)


def save_statistics(path: str | Path, stats: FeatureStatistics) -> Path:
    """Write ``stats`` to an ``.npz`` atomically (mean, cov, n, extractor)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        np.savez(f, mean=stats.mean, cov=stats.cov, n=np.int64(stats.n), extractor=stats.extractor)
    return path


def load_statistics(path: str | Path, extractor_digest: str | None = None) -> FeatureStatistics:
    """Read statistics written by :func:`save_statistics` (``allow_pickle=False``); with
    ``extractor_digest``, refuse them if another extractor made them."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"statistics file {str(path)!r}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            mean, cov, n, ext = z["mean"], z["cov"], int(z["n"]), str(z["extractor"])
    except Exception as err:
        raise ValueError(
            f"statistics file {str(path)!r} is corrupt or not a statistics file "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    d = mean.shape[0] if mean.ndim == 1 else -1
    if d < 1 or cov.shape != (d, d) or n <= d:
        raise ValueError(f"statistics file {str(path)!r} is inconsistent (mean, cov or n)")
    stats = FeatureStatistics(mean.astype(np.float64), cov.astype(np.float64), n, ext)
    if extractor_digest is not None and ext != extractor_digest:
        raise ValueError(
            f"statistics file {str(path)!r} was made by extractor {ext[:12]}, not "
            f"{extractor_digest[:12]}: recompute it with this extractor"
        )
    return stats


def feature_floor(
    metric: Callable[[np.ndarray, np.ndarray], float],
    features: Tensor | np.ndarray,
    n: int,
    m: int | None = None,
    repeats: int = 10,
    seed: int = 0,
) -> NoiseFloor:
    """The floor of a two-sample image metric: ``metric(a, b)`` for disjoint random subsets a, b
    (sizes n and m, default m = n) of real ``features``, over ``repeats`` draws.

    A model whose metric lies within this floor is indistinguishable from the data at these
    sample sizes. Compare at the same n (and m): FD and precision/recall depend on them.
    Needs n + m <= len(features).
    """
    f = _features_2d(features)
    m = n if m is None else m
    for name, v in (("n", n), ("m", m)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"{name} must be an integer >= 2, got {v!r}")
    if n + m > f.shape[0]:
        raise ValueError(
            f"two disjoint draws of {n} and {m} need {n + m} features, got {f.shape[0]}"
        )
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"repeats must be an integer >= 2, got {repeats!r}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(repeats):
        idx = rng.permutation(f.shape[0])
        values.append(float(metric(f[idx[:n]], f[idx[n : n + m]])))
    v = np.asarray(values)
    return NoiseFloor(
        mean=float(v.mean()),
        std=float(v.std(ddof=1)),
        q95=float(np.quantile(np.abs(v), 0.95)),
        values=tuple(values),
    )
