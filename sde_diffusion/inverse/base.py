"""Linear observation operators y = A x + sigma_y n, n ~ N(0, I), as objects.

An operator gives ``A``, its adjoint ``A_adjoint`` (A^T), a pseudo-inverse ``A_dagger`` (A^+)
and an SVD A = U diag(s) V^T over the flattened event, beside the noise level ``sigma_y``.
Methods (replacement, DPS, PiGDM/DDRM, SMC) take an operator, never a concrete class. Models:
deepinv's ``physics`` (``A``, ``A_adjoint``, ``A_dagger``); DDRM's ``H_functions`` (Kawar et al.,
2022, App. A) for the SVD as callables. Events have any rank: ``(D,)`` points or ``(C, H, W)``
images; the batch axis comes first everywhere.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

Shape = tuple[int, ...]


def noise_level(value: object) -> float:
    """Check that ``sigma_y`` is a finite real number >= 0 and return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if not (isinstance(value, Tensor) and value.numel() == 1):
            raise ValueError(f"sigma_y must be a real number >= 0, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"sigma_y must be a finite number >= 0, got {value!r}")
    return value


def _like(p: Tensor, x: Tensor) -> Tensor:
    """Parameter ``p`` on the device and dtype of ``x``."""
    return p.to(device=x.device, dtype=x.dtype)


@dataclass(frozen=True)
class OperatorSVD:
    """A = U diag(s) V^T[:r] over the flattened event (Kawar et al., 2022, Eq. 3).

    ``Vt``: ``(B, *event) -> (B, D)`` spectral coefficients, the first ``r`` paired with
    ``singulars``; ``V``: its inverse; ``Ut``: ``(B, *obs) -> (B, r)``; ``U``: ``(B, r) ->
    (B, *obs)``. Then ``A(x) == U(singulars * Vt(x)[:, :r])``, V is orthogonal, and U is
    orthogonal whenever A has full row rank (every built-in operator).
    """

    singulars: Tensor
    Vt: Callable[[Tensor], Tensor]
    V: Callable[[Tensor], Tensor]
    Ut: Callable[[Tensor], Tensor]
    U: Callable[[Tensor], Tensor]

    @property
    def rank(self) -> int:
        return int(self.singulars.numel())


class Operator(ABC):
    """A linear observation y = A x + sigma_y n with noise level ``sigma_y >= 0``.

    Subclasses implement ``out_shape``, ``in_shape``, ``A`` and ``A_adjoint``; ``A_dagger`` and
    ``svd`` fall back to a dense SVD of ``matrix`` (fine for small events) unless overridden.
    """

    def __init__(self, sigma_y: float = 0.0) -> None:
        self.sigma_y = noise_level(sigma_y)

    # ------------------------------------------------------------------ shapes
    @abstractmethod
    def out_shape(self, event_shape: Sequence[int]) -> Shape:
        """The observation's shape for events of ``event_shape`` (one-line error if unsupported)."""

    @abstractmethod
    def in_shape(self, obs_shape: Sequence[int]) -> Shape:
        """The event shape whose observations have ``obs_shape``."""

    # ------------------------------------------------------------------ maps
    @abstractmethod
    def A(self, x: Tensor) -> Tensor:
        """A x for a batch ``(B, *event_shape)``, returning ``(B, *obs_shape)``."""

    @abstractmethod
    def A_adjoint(self, y: Tensor) -> Tensor:
        """A^T y for a batch ``(B, *obs_shape)``, returning ``(B, *event_shape)``."""

    def __call__(self, x: Tensor) -> Tensor:
        return self.A(x)

    def A_dagger(self, y: Tensor) -> Tensor:
        """Moore-Penrose pseudo-inverse A^+ y = V diag(1/s) U^T y (minimum-norm least squares)."""
        svd = self.svd(self.in_shape(y.shape[1:]))
        coef = svd.Ut(y) / _like(svd.singulars, y)
        z = y.new_zeros(y.shape[0], math.prod(self.in_shape(y.shape[1:])))
        z[:, : svd.rank] = coef
        return svd.V(z)

    def observe(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw y = A x + sigma_y n with n ~ N(0, I) from ``generator``."""
        y = self.A(x)
        if self.sigma_y == 0:
            return y
        n = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        return y + self.sigma_y * n

    # ------------------------------------------------------------------ dense forms
    def matrix(self, event_shape: Sequence[int], dtype: torch.dtype = torch.float64) -> Tensor:
        """A as a dense ``(M, D)`` matrix over flattened events (A applied to the basis)."""
        event_shape = tuple(int(s) for s in event_shape)
        D = math.prod(event_shape)
        basis = torch.eye(D, dtype=dtype).reshape(D, *event_shape)
        return self.A(basis).reshape(D, -1).T.contiguous()

    def svd(self, event_shape: Sequence[int]) -> OperatorSVD:
        """The SVD of ``matrix(event_shape)`` (dense fallback; exact rank at 1e-12 relative)."""
        event_shape = tuple(int(s) for s in event_shape)
        obs_shape = self.out_shape(event_shape)
        U, s, Vh = torch.linalg.svd(self.matrix(event_shape), full_matrices=True)
        r = int((s > 1e-12 * s.max().clamp_min(1e-300)).sum()) if s.numel() else 0
        U, s = U[:, :r], s[:r]

        def Vt(x: Tensor) -> Tensor:
            return x.reshape(x.shape[0], -1) @ _like(Vh, x).T

        def V(z: Tensor) -> Tensor:
            return (z @ _like(Vh, z)).reshape(z.shape[0], *event_shape)

        def Ut(y: Tensor) -> Tensor:
            return y.reshape(y.shape[0], -1) @ _like(U, y)

        def U_(z: Tensor) -> Tensor:
            return (z @ _like(U, z).T).reshape(z.shape[0], *obs_shape)

        return OperatorSVD(s, Vt, V, Ut, U_)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma_y={self.sigma_y})"
