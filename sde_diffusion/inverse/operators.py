"""Built-in observation operators: identity, masking, channel mixing (pooling: ``pooling.py``).

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
