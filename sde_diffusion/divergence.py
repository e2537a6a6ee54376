"""The divergence of a vector field, exactly or by the Hutchinson–Skilling trace estimator.

For f: R^D -> R^D with Jacobian J(x) = df/dx, div f(x) = tr J(x). Both estimators use only
vector–Jacobian products v^T J (one backward pass each), never the full Jacobian:

- exact: tr J = sum_i e_i^T J e_i, one VJP per dimension, so D backward passes;
- Hutchinson–Skilling: tr J ~ (1/K) sum_k v_k^T J v_k with E[v v^T] = I, one VJP per probe;
  unbiased, with variance 2 (||S||_F^2 - sum_i S_ii^2) / K for Rademacher probes
  (v_i = +-1) and 2 ||S||_F^2 / K for Gaussian ones, S = (J + J^T) / 2.
  Hutchinson (1990); Skilling (1989); used for FFJORD by Grathwohl et al. (2019), Sec. 3, and
  for the probability-flow ODE by Song et al. (2021), App. D.2.

Every function works on flat batches x of shape (B, D) and assumes that f acts on each sample
separately (the Jacobian of the batch is block diagonal), as a score model does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Field = Callable[[Tensor], Tensor]

#: Largest dimension for which ``trace="exact"`` runs (D backward passes per evaluation).
EXACT_MAX_DIM = 128
TRACES = ("hutchinson", "exact")
PROBES = ("rademacher", "gaussian")


def check_trace(trace: str, dim: int, *, max_dim: int = EXACT_MAX_DIM) -> None:
    """Refuse an unknown trace estimator, and the exact trace above ``max_dim`` dimensions."""
    if trace not in TRACES:
        raise ValueError(f"trace must be one of {TRACES}, got {trace!r}")
    if trace == "exact" and dim > max_dim:
        raise ValueError(
            f"trace='exact' needs one backward pass per dimension, {dim} per evaluation here, "
            f"and is refused above {max_dim} dimensions; use trace='hutchinson' (an unbiased "
            "estimate with one backward pass per probe; raise n_probes to lower its variance)"
        )


def draw_probes(
    n_probes: int,
    batch: int,
    dim: int,
    *,
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``(n_probes, batch, dim)`` probes with E[v v^T] = I: Rademacher (+-1) or standard normal."""
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes must be an integer >= 1, got {n_probes!r}")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    shape = (n_probes, batch, dim)
    if probe == "gaussian":
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    bits = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * bits - 1).to(dtype)


def _vjp_sum(
    fn: Field,
    x: Tensor,
    n: int,
    vector: Callable[[int], Tensor],
    contract: Callable[[int, Tensor], Tensor],
) -> tuple[Tensor, Tensor]:
    """f(x) (detached) and sum_k contract(k, v_k^T J(x)), v_k = vector(k), over k < n.

    One forward pass and n backward passes; each vector and VJP is dropped once contracted to
    shape (B,), so the exact trace never holds D basis vectors or Jacobian rows at once.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = fn(x)
        if tuple(y.shape) != tuple(x.shape):
            raise ValueError(f"the field must map (B, D) to (B, D), got {tuple(y.shape)}")
        if not y.requires_grad:
            raise ValueError(
                "the field's output does not depend on x through autograd (computed under "
                "torch.no_grad() or detached?); its divergence needs gradients"
            )
        total = x.new_zeros(x.shape[0])
        for k in range(n):
            (g,) = torch.autograd.grad(y, x, vector(k), retain_graph=k < n - 1, allow_unused=True)
            if g is not None:
                total = total + contract(k, g)
    return y.detach(), total


def hutchinson_divergence(fn: Field, x: Tensor, probes: Tensor) -> tuple[Tensor, Tensor]:
    """(f(x), (1/K) sum_k v_k^T J(x) v_k) for probes ``(K, B, D)``: K VJPs.

    Hutchinson (1990); Grathwohl et al. (2019), Sec. 3. Unbiased for tr J when E[v v^T] = I.
    """
    if probes.ndim != 3 or tuple(probes.shape[1:]) != tuple(x.shape):
        raise ValueError(
            f"probes must have shape (K, *{tuple(x.shape)}), got {tuple(probes.shape)}"
        )
    n = probes.shape[0]
    y, total = _vjp_sum(fn, x, n, lambda k: probes[k], lambda k, g: (g * probes[k]).sum(dim=1))
    return y, total / n


def exact_divergence(
    fn: Field, x: Tensor, *, max_dim: int = EXACT_MAX_DIM
) -> tuple[Tensor, Tensor]:
    """(f(x), tr J(x)) with tr J = sum_i (e_i^T J)_i: D VJPs, refused above ``max_dim``."""
    dim = x.shape[1]
    check_trace("exact", dim, max_dim=max_dim)

    def basis(i: int) -> Tensor:
        e = torch.zeros_like(x)
        e[:, i] = 1
        return e

    return _vjp_sum(fn, x, dim, basis, lambda i, g: g[:, i])


def divergence(
    fn: Field,
    x: Tensor,
    *,
    trace: str = "hutchinson",
    probes: Tensor | None = None,
    max_dim: int = EXACT_MAX_DIM,
) -> tuple[Tensor, Tensor]:
    """(f(x), div f(x)) for flat ``x`` of shape ``(B, D)``; Hutchinson needs ``probes``."""
    check_trace(trace, x.shape[1], max_dim=max_dim)
    if trace == "exact":
        return exact_divergence(fn, x, max_dim=max_dim)
    if probes is None:
        raise ValueError("trace='hutchinson' needs probes; draw them with draw_probes()")
    return hutchinson_divergence(fn, x, probes)
