"""Preset Gaussian mixtures: toy data sets whose every diffused score is known exactly.

Each function returns a :class:`~sde_diffusion.mixture.GaussianMixture`; pair it with
``mixture.score_fn(sde)`` for an exact score and with :mod:`sde_diffusion.metrics` for the
sample quality of a solver. The 2-D presets follow the toy data of Grathwohl et al. (2019,
FFJORD) and Song et al. (2021, Fig. 2), in mixture form so that scores are exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .mixture import GaussianMixture

__all__ = [
    "bimodal_1d",
    "correlated_mixture",
    "digit_mixture",
    "eight_gaussians",
    "grid_mixture",
    "unequal_mixture",
]


def _dtype(dtype: torch.dtype | None) -> torch.dtype:
    return torch.get_default_dtype() if dtype is None else dtype


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def eight_gaussians(
    radius: float = 2.0, std: float = 0.2, dtype: torch.dtype | None = None
) -> GaussianMixture:
    """Eight equal isotropic modes N(r (cos 2 pi k/8, sin 2 pi k/8), std^2 I), k = 0..7.

    Neighbouring modes are 2 r sin(pi/8) = 1.53 apart at the defaults, 7.7 standard deviations:
    well separated, so a sampler that blurs or drops modes is seen at once by the metrics.
    """
    radius, std = _positive("radius", radius), _positive("std", std)
    angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    return GaussianMixture(
        torch.full((8,), 1 / 8, dtype=torch.float64),
        means,
        stds=torch.full((8,), std, dtype=torch.float64),
        dtype=_dtype(dtype),
    )


def bimodal_1d(
    separation: float = 4.0,
    std: float = 0.5,
    weights: tuple[float, float] = (0.5, 0.5),
    dtype: torch.dtype | None = None,
) -> GaussianMixture:
    """Two 1-D modes w_1 N(-separation/2, std^2) + w_2 N(+separation/2, std^2); events ``(1,)``."""
    separation, std = _positive("separation", separation), _positive("std", std)
    half = separation / 2
    return GaussianMixture(weights, [[-half], [half]], stds=[std, std], dtype=_dtype(dtype))


def grid_mixture(
    n: int = 4,
    spacing: float = 2.0,
    std: float = 0.2,
    checkerboard: bool = False,
    dtype: torch.dtype | None = None,
) -> GaussianMixture:
    """Equal isotropic modes on an n x n grid centred at 0, ``spacing`` apart.

    With ``checkerboard=True`` only the cells with (i + j) even are kept (ceil(n^2 / 2) modes),
    the mixture analogue of the checkerboard toy density.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    spacing, std = _positive("spacing", spacing), _positive("std", std)
    coord = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * spacing
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = ((i + j) % 2 == 0) if checkerboard else torch.ones_like(i, dtype=torch.bool)
    means = torch.stack([coord[i[keep]], coord[j[keep]]], dim=1)
    K = means.shape[0]
    return GaussianMixture(
        torch.full((K,), 1 / K, dtype=torch.float64),
        means,
        stds=torch.full((K,), std, dtype=torch.float64),
        dtype=_dtype(dtype),
    )


def unequal_mixture(dtype: torch.dtype | None = None) -> GaussianMixture:
    """Three 2-D modes with unequal weights (0.6, 0.3, 0.1) and widths (std 0.6, 0.3 and 0.1).

    The light narrow mode is the one a coarse sampler loses first; the diagonal (axis-aligned,
    anisotropic) middle mode tests per-axis variances.
    """
    weights = [0.6, 0.3, 0.1]
    means = [[-1.5, 0.0], [1.5, 1.0], [0.5, -1.5]]
    stds = [[0.6, 0.6], [0.3, 0.5], [0.1, 0.1]]
    return GaussianMixture(weights, means, stds=stds, dtype=_dtype(dtype))


def correlated_mixture(dtype: torch.dtype | None = None) -> GaussianMixture:
    """Two 2-D modes with full covariances (correlations +0.8 and -0.6), weights (0.4, 0.6)."""
    covs = [[[0.5, 0.4], [0.4, 0.5]], [[0.25, -0.12], [-0.12, 0.16]]]
    return GaussianMixture([0.4, 0.6], [[-1.0, -1.0], [1.2, 0.8]], covs=covs, dtype=_dtype(dtype))


DIGIT_MIXTURE_SHAPES = ((1, 8, 8), (1, 28, 28), (3, 32, 32))  #: the benchmark's image shapes
DIGIT_WEIGHTS = tuple((k + 1) / 55 for k in range(10))  #: digit k has weight (k + 1) / 55
DIGIT_STDS = tuple(0.08 + 0.01 * k for k in range(10))  #: digit k has std 0.08 + 0.01 k
ANISOTROPIC_FLOOR, ANISOTROPIC_SCALE = 0.03, 0.25  #: s_d = 0.03 + 0.25 * pixel std of the 9s


def _digit_statistics() -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class pixel means and stds ``(10, 1, 8, 8)`` of all 1797 bundled digits, in [-1, 1]."""
    from .data import DigitsDataset

    full = [DigitsDataset(split) for split in ("train", "test")]
    x = torch.cat([d.data.to(torch.float64) for d in full])
    y = torch.cat([d.labels for d in full])
    means = torch.stack([x[y == k].mean(0) for k in range(10)])
    stds = torch.stack([x[y == k].std(0) for k in range(10)])
    return means, stds


def _to_shape(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Bilinear resize of ``(K, 1, 8, 8)`` maps to ``shape[1:]``, replicated to ``shape[0]`` channels."""
    if tuple(images.shape[2:]) != tuple(shape[1:]):
        images = F.interpolate(images, size=tuple(shape[1:]), mode="bilinear", align_corners=False)
    return images.expand(-1, shape[0], -1, -1).contiguous()


def digit_mixture(
    shape: tuple[int, int, int] | list[int] = (1, 8, 8),
    anisotropic: bool = False,
    dtype: torch.dtype | None = None,
) -> GaussianMixture:
    """Ten image-shaped modes at the class means of the bundled 8x8 digits, events ``shape``.

    Component k (digit k) is N(m_k, s_k^2 I) with m_k the mean of all 1797 digits of class k
    scaled to [-1, 1], bilinearly resized to ``shape[1:]`` and replicated over ``shape[0]``
    channels; weights w_k = (k + 1) / 55 (0.018 for the 0s to 0.18 for the 9s) and stds
    s_k = 0.08 + 0.01 k (0.08 to 0.17). Neighbouring means are >= 2.6 apart at 8x8, >= 15 stds,
    so every sample's component is known from its posterior. With ``anisotropic=True`` the
    heaviest component (the 9s) is diagonal instead: per-pixel stds 0.03 + 0.25 x the pixel std
    of the 9s in the data (0.03 to 0.21), resized like the means. Exact scores under every SDE:
    ``digit_mixture(...).score_fn(sde)``; the presets of the image-dimension benchmark are the
    three :data:`DIGIT_MIXTURE_SHAPES` (D = 64, 784, 3072), isotropic and anisotropic.
    """
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3 or any(v < 1 for v in shape):
        raise ValueError(f"shape must be (channels, height, width) >= 1, got {shape!r}")
    means, pixel_stds = _digit_statistics()
    means = _to_shape(means, shape)
    stds = torch.tensor(DIGIT_STDS, dtype=torch.float64)
    if anisotropic:
        diag = stds[:, None, None, None].expand(-1, *shape).clone()
        diag[9] = _to_shape(ANISOTROPIC_FLOOR + ANISOTROPIC_SCALE * pixel_stds[9:], shape)[0]
        stds = diag
    return GaussianMixture(list(DIGIT_WEIGHTS), means, stds=stds, dtype=_dtype(dtype))
