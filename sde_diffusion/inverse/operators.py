"""Built-in observation operators: identity, masking, channel mixing, average pooling.

Each gives A, A^T, a closed-form pseudo-inverse and a matrix-free SVD (DDRM's H_functions,
Kawar et al., 2022, App. A), so that methods never need a dense matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .base import Operator, OperatorSVD, Shape, _like


def _shape(name: str, x: Tensor, expected: Shape) -> None:
    if tuple(x.shape[1:]) != tuple(expected):
        raise ValueError(f"{name} must have shape (B, *{tuple(expected)}), got {tuple(x.shape)}")


def _identity_svd(n: int, event_shape: Shape, obs_shape: Shape) -> OperatorSVD:
    def flat(x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    return OperatorSVD(
        torch.ones(n, dtype=torch.float64),
        flat,
        lambda z: z.reshape(z.shape[0], *event_shape),
        flat,
        lambda z: z.reshape(z.shape[0], *obs_shape),
    )


class Identity(Operator):
    """y = x + sigma_y n: denoising (A = I)."""

    def out_shape(self, event_shape: Sequence[int]) -> Shape:
        return tuple(int(s) for s in event_shape)

    def in_shape(self, obs_shape: Sequence[int]) -> Shape:
        return tuple(int(s) for s in obs_shape)

    def A(self, x: Tensor) -> Tensor:
        return x

    def A_adjoint(self, y: Tensor) -> Tensor:
        return y

    def A_dagger(self, y: Tensor) -> Tensor:
        return y

    def svd(self, event_shape: Sequence[int]) -> OperatorSVD:
        shape = self.out_shape(event_shape)
        return _identity_svd(math.prod(shape), shape, shape)


class Mask(Operator):
    """y = x[mask] + sigma_y n: inpainting and imputation (Song et al., 2021, App. I.2).

    Args:
        mask: boolean (or 0/1) of the event shape, True where x is observed.
        sigma_y: observation noise level >= 0.

    The observation is flat, ``(B, M)`` with M = mask.sum(); A A^T = I, so A^+ = A^T (zero fill).
    """

    def __init__(self, mask: object, sigma_y: float = 0.0) -> None:
        super().__init__(sigma_y)
        m = torch.as_tensor(np.asarray(mask)) if not isinstance(mask, Tensor) else mask.cpu()
        if m.ndim < 1:
            raise ValueError(f"mask must have the event's shape (rank >= 1), got {tuple(m.shape)}")
        if m.dtype != torch.bool:
            if not ((m == 0) | (m == 1)).all():
                raise ValueError("mask must be boolean or hold only 0 and 1")
            m = m != 0
        if not m.any():
            raise ValueError("mask observes nothing (every entry is False)")
        self.mask = m
        self.event_shape: Shape = tuple(m.shape)
        flat = m.reshape(-1)
        self._observed = torch.nonzero(flat).reshape(-1)
        self._missing = torch.nonzero(~flat).reshape(-1)

    @property
    def n_observed(self) -> int:
        return int(self._observed.numel())

    def out_shape(self, event_shape: Sequence[int]) -> Shape:
        if tuple(event_shape) != self.event_shape:
            raise ValueError(
                f"mask has shape {self.event_shape} but the events have shape {tuple(event_shape)}"
            )
        return (self.n_observed,)

    def in_shape(self, obs_shape: Sequence[int]) -> Shape:
        if tuple(obs_shape) != (self.n_observed,):
            raise ValueError(
                f"observations of this mask have shape ({self.n_observed},), got {tuple(obs_shape)}"
            )
        return self.event_shape

    def A(self, x: Tensor) -> Tensor:
        self.out_shape(x.shape[1:])
        return x.reshape(x.shape[0], -1)[:, self._observed.to(x.device)]

    def A_adjoint(self, y: Tensor) -> Tensor:
        self.in_shape(y.shape[1:])
        out = y.new_zeros(y.shape[0], self.mask.numel())
        out[:, self._observed.to(y.device)] = y
        return out.reshape(y.shape[0], *self.event_shape)

    def A_dagger(self, y: Tensor) -> Tensor:
        return self.A_adjoint(y)

    def svd(self, event_shape: Sequence[int]) -> OperatorSVD:
        """V^T permutes the observed entries first; s = 1; U = I."""
        M = self.out_shape(event_shape)[0]
        order = torch.cat([self._observed, self._missing])

        def Vt(x: Tensor) -> Tensor:
            return x.reshape(x.shape[0], -1)[:, order.to(x.device)]

        def V(z: Tensor) -> Tensor:
            out = torch.empty_like(z)
            out[:, order.to(z.device)] = z
            return out.reshape(z.shape[0], *self.event_shape)

        return OperatorSVD(torch.ones(M, dtype=torch.float64), Vt, V, lambda y: y, lambda z: z)


class ChannelMix(Operator):
    """y[:, i] = sum_c W[i, c] x[:, c] + sigma_y n: colourisation (Song et al., 2021, App. I.3).

    Args:
        matrix: ``(m, C)`` mixing matrix W, applied at every position of the event's first axis
            (the channels of ``(C, H, W)``; every coordinate of a flat ``(D,)`` event, where
            it is a general linear map).
        channels: instead of ``matrix``: the mean over ``channels`` channels, W = 1^T / C.
        sigma_y: observation noise level >= 0.
    """

    def __init__(
        self, matrix: object | None = None, *, channels: int | None = None, sigma_y: float = 0.0
    ) -> None:
        super().__init__(sigma_y)
        if (matrix is None) == (channels is None):
            raise ValueError("give exactly one of matrix (m, C) or channels (mean over C)")
        if channels is not None:
            if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
                raise ValueError(f"channels must be an integer >= 1, got {channels!r}")
            W = torch.full((1, channels), 1.0 / channels, dtype=torch.float64)
        else:
            W = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
            if W.ndim != 2 or W.numel() == 0:
                raise ValueError(f"matrix must have shape (m, C), got {tuple(W.shape)}")
            if not torch.isfinite(W).all():
                raise ValueError("matrix must be finite")
        self.weight = W
        self.channels = W.shape[1]
        U, s, Vh = torch.linalg.svd(W, full_matrices=True)
        r = int((s > 1e-12 * s.max().clamp_min(1e-300)).sum())
        self._U, self._s, self._Vh = U[:, :r], s[:r], Vh

    def out_shape(self, event_shape: Sequence[int]) -> Shape:
        event_shape = tuple(int(s) for s in event_shape)
        if len(event_shape) < 1 or event_shape[0] != self.channels:
            raise ValueError(
                f"the mixing matrix has {self.channels} input channels but the events have shape "
                f"{event_shape} (channels first)"
            )
        return (self.weight.shape[0], *event_shape[1:])

    def in_shape(self, obs_shape: Sequence[int]) -> Shape:
        obs_shape = tuple(int(s) for s in obs_shape)
        if len(obs_shape) < 1 or obs_shape[0] != self.weight.shape[0]:
            raise ValueError(
                f"observations must have {self.weight.shape[0]} channels first, got {obs_shape}"
            )
        return (self.channels, *obs_shape[1:])

    @staticmethod
    def _mix(W: Tensor, x: Tensor) -> Tensor:
        """Apply ``W`` over axis 1 of ``x`` (B, C, *rest)."""
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        out = torch.einsum("ij,bjp->bip", _like(W, x), flat)
        return out.reshape(x.shape[0], W.shape[0], *x.shape[2:])

    def A(self, x: Tensor) -> Tensor:
        self.out_shape(x.shape[1:])
        return self._mix(self.weight, x)

    def A_adjoint(self, y: Tensor) -> Tensor:
        self.in_shape(y.shape[1:])
        return self._mix(self.weight.T, y)

    def svd(self, event_shape: Sequence[int]) -> OperatorSVD:
        """Per-position SVD W = U_c diag(s_c) V_c^T; coefficients ordered (rank index, position)."""
        event_shape = tuple(int(s) for s in event_shape)
        obs_shape = self.out_shape(event_shape)
        P = math.prod(event_shape[1:])
        r = self._s.numel()

        def Vt(x: Tensor) -> Tensor:
            return self._mix(self._Vh, x).reshape(x.shape[0], -1)

        def V(z: Tensor) -> Tensor:
            return self._mix(self._Vh.T, z.reshape(z.shape[0], self.channels, *event_shape[1:]))

        def Ut(y: Tensor) -> Tensor:
            return self._mix(self._U.T, y).reshape(y.shape[0], -1)

        def U(z: Tensor) -> Tensor:
            return self._mix(self._U, z.reshape(z.shape[0], r, *obs_shape[1:]))

        return OperatorSVD(self._s.repeat_interleave(P), Vt, V, Ut, U)


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
