"""Correctors of the predictor–corrector sampler: Langevin MCMC on p_t at a fixed time t.

Song et al. (2021), Algorithms 4–5 (appendix G). Each corrector is a small frozen
dataclass with ``update(equation, x, t, t_next, noise) -> x``; it stays at time ``t`` and
uses ``t_next`` only for the step-size factor alpha_i = a^2, a = alpha(t)/alpha(t_next)
(= 1 - beta_i for VP, 1 for VE). ``n_evals`` is the number of score evaluations per update.
Standard normal draws come from ``noise.normal``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import ClassVar, Protocol

from torch import Tensor

from ._utils import append_dims, batch_time
from .equation import Equation
from .noise import NoiseSource
from .predictors import transition

STEP_SIZES = ("per_sample", "batch")


def check_snr(snr: float) -> None:
    if isinstance(snr, bool) or not isinstance(snr, Real) or not (math.isfinite(snr) and snr > 0):
        raise ValueError(f"snr must be a finite number > 0, got {snr!r}")


def check_n_steps(n_steps: int) -> None:
    if isinstance(n_steps, bool) or not isinstance(n_steps, Integral) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")


def check_step_size(step_size: str) -> None:
    if step_size not in STEP_SIZES:
        raise ValueError(f"step_size must be one of {', '.join(STEP_SIZES)}; got {step_size!r}")


class Corrector(Protocol):
    requires: ClassVar[tuple[str, ...]]

    @property
    def n_evals(self) -> int: ...

    def update(
        self, equation: Equation, x: Tensor, t: Tensor, t_next: Tensor, noise: NoiseSource
    ) -> Tensor: ...


def _row_norm(v: Tensor) -> Tensor:
    """The Euclidean norm of each sample, shape (B,)."""
    return v.reshape(v.shape[0], -1).norm(dim=1)


@dataclass(frozen=True)
class NoCorrector:
    """The identity: predictor-only sampling (Song et al. 2021, "P only" columns of Table 1)."""

    requires: ClassVar[tuple[str, ...]] = ()

    @property
    def n_evals(self) -> int:
        return 0

    def update(
        self, equation: Equation, x: Tensor, t: Tensor, t_next: Tensor, noise: NoiseSource
    ) -> Tensor:
        return x


@dataclass(frozen=True)
class LangevinCorrector:
    """n_steps of x <- x + eps s(x, t) + sqrt(2 eps) z, eps = 2 alpha_i (snr ||z|| / ||s||)^2.

    Unadjusted Langevin dynamics with the step chosen so that the signal-to-noise ratio
    ||eps s|| / ||sqrt(2 eps) z|| equals ``snr`` (up to the factor alpha_i); Song et al. (2021),
    Algorithms 4–5 ("LangevinCorrector"). With batch norms its invariant law is p_t up to
    O(eps) (the ULA bias).

    ``step_size`` chooses whose norms set eps:

    - ``"per_sample"`` (default): ||z|| and ||s|| of each sample, so each sample's step, and
      hence its result, depends on that sample alone: a seeded sample does not change when
      the rest of the batch changes.
    - ``"batch"``: the reference's choice, the batch means of ||z|| and ||s||, one eps for
      the whole batch. A sample's step then depends on the other samples (its draws, its
      batch size), though the two agree closely in high dimension, where ||z|| ~ sqrt(d).

    Per-sample norms cost accuracy in low dimension d: eps then depends on the sample itself
    (through ||s(x)||) and on its own draw z, so the chain no longer targets p_t. On Gaussian
    data, many steps at snr = 0.16 settle at var/V = 1.29 (d = 16), 1.09 (d = 64), 1.04
    (d = 256), 1.03 (d = 3072), against 1.025 (the plain ULA bias) with batch norms; in d = 1
    the step is unbounded where ||s|| ~ 0. Song et al. (2021, appendix G) suggest ||z|| ->
    sqrt(d) for small batches. Use ``"per_sample"`` for image-sized data.
    """

    snr: float = 0.16
    n_steps: int = 1
    step_size: str = "per_sample"
    requires: ClassVar[tuple[str, ...]] = ("score", "marginal")

    def __post_init__(self) -> None:
        check_snr(self.snr)
        check_n_steps(self.n_steps)
        check_step_size(self.step_size)

    @property
    def n_evals(self) -> int:
        return int(self.n_steps)

    def update(
        self, equation: Equation, x: Tensor, t: Tensor, t_next: Tensor, noise: NoiseSource
    ) -> Tensor:
        tb = batch_time(t, x)
        alpha_i = transition(equation, t, t_next, x).a ** 2
        for _ in range(int(self.n_steps)):
            score = equation.score(x, tb)
            z = noise.normal(x)
            z_norm, s_norm = _row_norm(z), _row_norm(score)
            if self.step_size == "batch":
                z_norm, s_norm = z_norm.mean(), s_norm.mean()
            eps = append_dims(2.0 * alpha_i * (self.snr * z_norm / s_norm) ** 2, x.ndim)
            x = x + eps * score + (2.0 * eps).sqrt() * z
        return x


@dataclass(frozen=True)
class AnnealedLangevinCorrector:
    """n_steps of x <- x + eps s(x, t) + sqrt(2 eps) z, eps = 2 alpha_i (snr sigma(t))^2.

    Annealed Langevin dynamics (Song & Ermon, 2019, Algorithm 1) with the step fixed by the
    marginal's noise scale sigma(t) instead of the score norm; Song et al. (2021), appendix G
    ("AnnealedLangevinDynamics"). The step depends on t only, never on the batch.
    """

    snr: float = 0.16
    n_steps: int = 1
    requires: ClassVar[tuple[str, ...]] = ("score", "marginal")

    def __post_init__(self) -> None:
        check_snr(self.snr)
        check_n_steps(self.n_steps)

    @property
    def n_evals(self) -> int:
        return int(self.n_steps)

    def update(
        self, equation: Equation, x: Tensor, t: Tensor, t_next: Tensor, noise: NoiseSource
    ) -> Tensor:
        tb = batch_time(t, x)
        tr = transition(equation, t, t_next, x)
        eps = append_dims(2.0 * tr.a**2 * (self.snr * tr.sigma_t) ** 2, x.ndim)
        for _ in range(int(self.n_steps)):
            x = x + eps * equation.score(x, tb) + (2.0 * eps).sqrt() * noise.normal(x)
        return x
