"""The equation a solver integrates, handed over as plain callables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import Tensor

Drift = Callable[[Tensor, Tensor], Tensor]
Diffusion = Callable[[Tensor], Tensor]
Score = Callable[[Tensor, Tensor], Tensor]
Marginal = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Equation:
    """dx = drift(x, t) dt + diffusion(t) dW, integrated backwards or forwards in time.

    ``t`` is always a tensor of shape ``(B,)``; ``diffusion(t)`` returns shape ``(B,)``
    (a scalar noise level per sample, i.e. additive diagonal noise). With
    ``diffusion=None`` the equation is an ODE.

    Optional extras, used only by solvers that declare them in ``requires``:

    - ``score(x, t)``: the score of the marginal p_t, for Langevin correctors;
    - ``marginal(t) -> (alpha, sigma)``: the Gaussian transition x_t = alpha x_0 + sigma z
      of the forward process, for ancestral and exponential-integrator steps;
    - ``forward_drift(x, t)`` and ``forward_diffusion(t)``: the forward SDE's coefficients.
    """

    drift: Drift
    diffusion: Diffusion | None = None
    score: Score | None = None
    marginal: Marginal | None = None
    forward_drift: Drift | None = None
    forward_diffusion: Diffusion | None = None

    @property
    def stochastic(self) -> bool:
        """Whether the equation has a diffusion term (an SDE rather than an ODE)."""
        return self.diffusion is not None

    def counted(self, counter: EvalCounter) -> Equation:
        """Return a copy whose drift and score calls are counted in ``counter``.

        The drift closes over the original score, so a drift call counts once.
        """
        changes = {"drift": counter.wrap(self.drift)}
        if self.score is not None:
            changes["score"] = counter.wrap(self.score)
        return replace(self, **changes)


class EvalCounter:
    """Counts function evaluations with a host-side integer (no device sync)."""

    def __init__(self) -> None:
        self.n = 0

    def wrap(self, fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        def counted(*args, **kwargs):
            self.n += 1
            return fn(*args, **kwargs)

        return counted
