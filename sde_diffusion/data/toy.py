"""2-D toy data sets (sampled) and the analytic mixtures as one training data set.

Swiss roll, moons, rings and checkerboard follow the toy densities of Grathwohl et al.
(2019, FFJORD) and Song et al. (2021, Fig. 2); each is scaled to roughly [-4, 4]^2.
The Gaussian-mixture presets of :mod:`sde_diffusion.datasets` keep their exact scores
(``ToyDataset.mixture``), so a trained model can be measured against the truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .. import datasets as mixtures
from ..mixture import GaussianMixture


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return n


def _rand(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64)


def _randn(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def swiss_roll(
    n: int,
    generator: torch.Generator | None = None,
    noise: float = 0.5,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """(r cos r, r sin r) / 5 + noise, r = 1.5 pi (1 + 2 u), u ~ U[0, 1): the 2-D swiss roll."""
    r = 1.5 * math.pi * (1 + 2 * _rand(_check_n(n), generator))
    x = torch.stack([r * r.cos(), r * r.sin()], dim=1) + noise * _randn((n, 2), generator)
    return (x / 5).to(dtype)


def moons(
    n: int,
    generator: torch.Generator | None = None,
    noise: float = 0.1,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Two interleaved half circles (upper: angle in [0, pi]; lower: shifted by (1, -0.5)), centred, x2."""
    n = _check_n(n)
    angle = math.pi * _rand(n, generator)
    lower = _rand(n, generator) < 0.5
    x = torch.stack([angle.cos(), angle.sin()], dim=1)
    x = torch.where(lower[:, None], torch.stack([1 - x[:, 0], 0.5 - x[:, 1]], dim=1), x)
    x = x + noise * _randn((n, 2), generator) - torch.tensor([0.5, 0.25], dtype=torch.float64)
    return (2 * x).to(dtype)


def rings(
    n: int,
    generator: torch.Generator | None = None,
    noise: float = 0.08,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Four concentric circles of radii 1, 2, 3, 4 (scaled by 0.9), points split in proportion to radius."""
    n = _check_n(n)
    radius = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    k = torch.multinomial(radius / radius.sum(), n, replacement=True, generator=generator)
    angle = 2 * math.pi * _rand(n, generator)
    x = radius[k, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
    return (0.9 * x + noise * _randn((n, 2), generator)).to(dtype)


def checkerboard(
    n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Uniform on the 8 dark squares of a 4 x 4 board of side 8 centred at 0 (FFJORD)."""
    n = _check_n(n)
    x1 = 4 * _rand(n, generator) - 2
    x2 = _rand(n, generator) - 2 * (_rand(n, generator) < 0.5).to(torch.float64)
    x2 = x2 + torch.floor(x1).remainder(2)
    return (2 * torch.stack([x1, x2], dim=1)).to(dtype)


SAMPLED: dict[str, Callable[..., Tensor]] = {
    "swiss_roll": swiss_roll,
    "moons": moons,
    "rings": rings,
    "checkerboard": checkerboard,
}
MIXTURES: dict[str, Callable[..., GaussianMixture]] = {
    name: getattr(mixtures, name) for name in mixtures.__all__
}
NAMES = tuple(SAMPLED) + tuple(MIXTURES)


class ToyDataset(Dataset):
    """``n`` fixed samples of a named toy distribution, drawn once with ``seed``.

    Args:
        name: one of :data:`NAMES` (sampled sets and Gaussian-mixture presets).
        n: number of samples.
        seed: seed of the draw; the same (name, n, seed) gives the same data.
        dtype: dtype of ``data``.

    Attributes: ``data`` ``(n, *shape)``; ``shape`` the event shape; ``mixture`` the
    :class:`GaussianMixture` when the distribution is one (exact scores), else None;
    ``labels`` the ``(n,)`` class of each point for a mixture (its component's entry of
    ``component_labels``, by default the component index), else None;
    ``scaler`` None (toy data is used as is).
    """

    component_labels: list[int] | None = None  # class of each mixture component (None: index)

    scaler = None

    def __init__(
        self, name: str, n: int = 100_000, seed: int = 0, dtype: torch.dtype = torch.float32
    ) -> None:
        _check_n(n)
        generator = torch.Generator().manual_seed(int(seed))
        self.name, self._seed = name, seed
        self.mixture: GaussianMixture | None = None
        if name in SAMPLED:
            self.data = SAMPLED[name](n, generator, dtype=dtype)
        elif name in MIXTURES:
            self.mixture = MIXTURES[name]()
            self.data = self.mixture.sample(n, generator, dtype=dtype)
        else:
            raise ValueError(f"unknown toy data set {name!r}; choose one of {NAMES}")

    @classmethod
    def from_mixture(
        cls,
        mixture: GaussianMixture,
        n: int = 100_000,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> ToyDataset:
        """``n`` samples of any :class:`GaussianMixture` (e.g. one built from a Hydra config)."""
        self = cls.__new__(cls)
        self.name, self.mixture, self._seed = repr(mixture), mixture, seed
        self.data = mixture.sample(
            _check_n(n), torch.Generator().manual_seed(int(seed)), dtype=dtype
        )
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def labels(self) -> Tensor | None:
        """The class of each point of a mixture: the component it was drawn from (mapped by
        ``component_labels``). :meth:`GaussianMixture.sample` draws the components first,
        k ~ Categorical(w), from the seeded generator; that draw is replayed here."""
        if self.mixture is None or self._seed is None:
            return None
        gen = torch.Generator().manual_seed(int(self._seed))
        k = torch.multinomial(self.mixture.weights, len(self), replacement=True, generator=gen)
        if self.component_labels is None:
            return k
        return torch.as_tensor(self.component_labels, dtype=torch.long)[k]

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.data[index]

    def __repr__(self) -> str:
        return f"ToyDataset(name={self.name!r}, n={len(self)}, shape={self.shape})"


def mixture_dataset(
    weights: object,
    means: object,
    stds: object | None = None,
    covs: object | None = None,
    n: int = 100_000,
    seed: int = 0,
    labels: object | None = None,
) -> ToyDataset:
    """``n`` draws (``seed``) of the :class:`GaussianMixture` with these parameters: a mixture
    typed on the command line as training data (``train_data=gaussian_mixture``). Its
    ``mixture`` is the exact law, which a checkpoint's samples are then scored against.
    ``labels``: the class of each component (default: its index), for class conditioning."""
    out = ToyDataset.from_mixture(GaussianMixture(weights, means, stds, covs), n=n, seed=seed)
    if labels is not None:
        from ..guidance.exact import component_labels

        out.component_labels = component_labels(out.mixture, labels).tolist()
    return out
