"""Average pooling by an integer factor: the super-resolution operator, with a block SVD."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import Operator, OperatorSVD, Shape, _like


class AvgPool(Operator):
    """y = mean of each factor^k block + sigma_y n: super-resolution by an integer factor.

    Pools every axis of a flat ``(D,)`` event, and every axis but the first (channels) of an
    event of rank >= 2, e.g. ``(C, H, W) -> (C, H/f, W/f)``. A A^T = I / n with n = f^k, so
    A^+ = n A^T (nearest-neighbour upsampling); the SVD has s = n^(-1/2) on each block's mean
    direction (Kawar et al., 2022, App. A, super-resolution).
    """

    def __init__(self, factor: int, sigma_y: float = 0.0) -> None:
        super().__init__(sigma_y)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
        self.factor = factor

    def _split(self, shape: Sequence[int]) -> tuple[Shape, Shape]:
        shape = tuple(int(s) for s in shape)
        if len(shape) == 0:
            raise ValueError("events must have at least one axis")
        return (shape[:1], shape[1:]) if len(shape) >= 2 else ((), shape)

    def out_shape(self, event_shape: Sequence[int]) -> Shape:
        lead, spatial = self._split(event_shape)
        for axis, n in enumerate(spatial, start=len(lead)):
            if n % self.factor:
                raise ValueError(
                    f"factor {self.factor} does not divide the size {n} of event axis {axis} "
                    f"(event shape {tuple(event_shape)})"
                )
        return (*lead, *(n // self.factor for n in spatial))

    def in_shape(self, obs_shape: Sequence[int]) -> Shape:
        lead, spatial = self._split(obs_shape)
        return (*lead, *(n * self.factor for n in spatial))

    def _blocks(self, x: Tensor) -> Tensor:
        """``(B, *event) -> (B, L, n_blocks, f^k)``: channels, blocks, entries of a block."""
        lead, spatial = self._split(x.shape[1:])
        f, k = self.factor, len(spatial)
        split = [v for n in spatial for v in (n // f, f)]
        x = x.reshape(x.shape[0], math.prod(lead), *split)
        perm = [0, 1, *range(2, 2 + 2 * k, 2), *range(3, 3 + 2 * k, 2)]
        return x.permute(perm).reshape(x.shape[0], x.shape[1], -1, f**k)

    def _unblocks(self, b: Tensor, event_shape: Shape) -> Tensor:
        lead, spatial = self._split(event_shape)
        f, k = self.factor, len(spatial)
        x = b.reshape(b.shape[0], b.shape[1], *(n // f for n in spatial), *([f] * k))
        perm = [0, 1, *(v for i in range(k) for v in (2 + i, 2 + k + i))]
        return x.permute(perm).reshape(b.shape[0], *event_shape)

    def A(self, x: Tensor) -> Tensor:
        obs_shape = self.out_shape(x.shape[1:])
        return self._blocks(x).mean(-1).reshape(x.shape[0], *obs_shape)

    def _replicate(self, y: Tensor) -> Tensor:
        event_shape = self.in_shape(y.shape[1:])
        n = self.factor ** len(self._split(event_shape)[1])
        b = y.reshape(y.shape[0], -1, 1).expand(-1, -1, n)
        L = math.prod(self._split(event_shape)[0])
        return self._unblocks(b.reshape(y.shape[0], L, -1, n), event_shape)

    def A_adjoint(self, y: Tensor) -> Tensor:
        n = self.factor ** len(self._split(y.shape[1:])[1])
        return self._replicate(y) / n

    def A_dagger(self, y: Tensor) -> Tensor:
        return self._replicate(y)

    def svd(self, event_shape: Sequence[int]) -> OperatorSVD:
        """Per block an orthogonal Q with first column 1/sqrt(n); coefficients ordered (j, L, block)."""
        event_shape = tuple(int(s) for s in event_shape)
        obs_shape = self.out_shape(event_shape)
        n = self.factor ** len(self._split(event_shape)[1])
        seed = torch.eye(n, dtype=torch.float64)
        seed[:, 0] = 1.0
        Q, _ = torch.linalg.qr(seed)
        Q = Q * torch.sign(Q[0, 0])  # first column +1/sqrt(n); the rest stay orthonormal
        m = math.prod(obs_shape)

        def Vt(x: Tensor) -> Tensor:
            c = self._blocks(x) @ _like(Q, x)  # (B, L, nb, n)
            return c.permute(0, 3, 1, 2).reshape(x.shape[0], -1)

        def V(z: Tensor) -> Tensor:
            lead = math.prod(self._split(event_shape)[0])
            c = z.reshape(z.shape[0], n, lead, -1).permute(0, 2, 3, 1)
            return self._unblocks(c @ _like(Q, z).T, event_shape)

        def flat(y: Tensor) -> Tensor:
            return y.reshape(y.shape[0], -1)

        return OperatorSVD(
            torch.full((m,), n**-0.5, dtype=torch.float64),
            Vt,
            V,
            flat,
            lambda z: z.reshape(z.shape[0], *obs_shape),
        )

    def __repr__(self) -> str:
        return f"AvgPool(factor={self.factor}, sigma_y={self.sigma_y})"
