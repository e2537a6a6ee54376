"""Predictors of the predictor–corrector sampler: one step of the reverse-time SDE, t -> t_next.

Song et al. (2021), Algorithms 2–3 and appendix G. Each predictor is a small frozen
dataclass with ``update(equation, x, t, t_next, noise) -> x`` (``t``, ``t_next`` 0-dim
tensors, ``t_next < t``) and a ``requires`` tuple naming the optional
:class:`~solvers.equation.Equation` fields it uses. Every predictor evaluates the drift or
the score once per step.

The reverse-diffusion and ancestral predictors discretise the *forward* process through
its Gaussian marginal x_t = alpha(t) x_0 + sigma(t) z alone, so they serve any linear SDE
(VP, sub-VP, VE, ...). Over [s, t] = [t_next, t] the forward transition is

    x_t = a x_s + sqrt(v) z,   a = alpha(t)/alpha(s),   v = sigma(t)^2 - a^2 sigma(s)^2.

All predictors take their standard normal draw from the Brownian increment,
z = dW / sqrt(|dt|), so one Brownian path drives every predictor alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

from torch import Tensor

from ._utils import append_dims, batch_time
from .equation import Equation
from .noise import NoiseSource


class Transition(NamedTuple):
    """The forward Gaussian transition over [s, t] = [t_next, t], each entry of shape (B,)."""

    a: Tensor  # alpha(t) / alpha(s)
    v: Tensor  # sigma(t)^2 - a^2 sigma(s)^2, the transition variance (clamped at 0)
    alpha_t: Tensor
    sigma_t: Tensor
    alpha_s: Tensor
    sigma_s: Tensor


def transition(equation: Equation, t: Tensor, t_next: Tensor, x: Tensor) -> Transition:
    """The forward transition x_t = a x_s + sqrt(v) z from s = t_next to t, from the marginal.

    Exact for any linear SDE: x_t | x_0 ~ N(alpha_t x_0, sigma_t^2) and
    x_s | x_0 ~ N(alpha_s x_0, sigma_s^2) give a = alpha_t/alpha_s, v = sigma_t^2 - a^2 sigma_s^2.
    For VP, a^2 = exp(-int_s^t beta) = 1 - beta_i and v = 1 - a^2; for VE, a = 1 and
    v = sigma_t^2 - sigma_s^2 (the f_i, G_i of Song et al. 2021, Eq. 45).
    """
    alpha_t, sigma_t = equation.marginal(batch_time(t, x))
    alpha_s, sigma_s = equation.marginal(batch_time(t_next, x))
    a = alpha_t / alpha_s
    v = (sigma_t**2 - (a * sigma_s) ** 2).clamp_min(0.0)  # rounding only: v >= 0 exactly
    return Transition(a, v, alpha_t, sigma_t, alpha_s, sigma_s)


def standard_normal(noise: NoiseSource, t: Tensor, t_next: Tensor, x: Tensor) -> Tensor:
    """z = (W(t_next) - W(t)) / sqrt(|t_next - t|) ~ N(0, I): the step's Brownian draw, rescaled."""
    return noise.increment(t, t_next, x) / (t_next - t).abs().sqrt()


class Predictor(Protocol):
    requires: ClassVar[tuple[str, ...]]

    def update(
        self, equation: Equation, x: Tensor, t: Tensor, t_next: Tensor, noise: NoiseSource
    ) -> Tensor: ...


@dataclass(frozen=True)
class EulerMaruyamaPredictor:
    """x_next = x + f(x, t) dt + g(t) dW, dt = t_next - t < 0, dW ~ N(0, |dt|).

    The reverse-time SDE's drift f (Song et al. 2021, Eq. 6) and diffusion g; Kloeden &
    Platen (1992), Eq. 9.1.1. Weak order 1. One drift evaluation.
    """

    requires: ClassVar[tuple[str, ...]] = ()

    def update(
        self, equation: Equation, x: Tensor, t: Tensor, t_next: Tensor, noise: NoiseSource
    ) -> Tensor:
        tb = batch_time(t, x)
        g = append_dims(equation.diffusion(tb), x.ndim)
        return x + equation.drift(x, tb) * (t_next - t) + g * noise.increment(t, t_next, x)


VARIANCES = ("midpoint", "forward", "posterior")


def check_variance(variance: str, allowed: tuple[str, ...] = VARIANCES) -> None:
    if not isinstance(variance, str) or variance not in allowed:
        raise ValueError(f"variance must be one of {', '.join(allowed)}; got {variance!r}")


def step_variance(variance: str, tr: Transition) -> Tensor:
    """The variance of the step's noise, shape (B,): v, the posterior v sigma_s^2/sigma_t^2, or their mean.

    "forward": v, the forward transition's variance (Ho et al. 2020's sigma^2 = beta; the
    reference code's choice for VP). "posterior": beta_tilde = v sigma_s^2 / sigma_t^2, the
    variance of q(x_s | x_t, x_0) (Ho et al.'s sigma^2 = beta_tilde; the reference's SMLD
    step for VE). "midpoint": (v + beta_tilde) / 2.

    Why the midpoint. With the mean (x + v s)/a, a data mode that is Gaussian with marginal
    variance P at t (score -(x - m)/P) leaves the step with variance
    ((P - v)^2/P)/a^2 + c for noise variance c, while the exact reverse transition gives
    (P - v)/a^2: the exact c is (v/a^2)(1 - v/P), which depends on the data. The posterior
    choice is exact for a point mass (P = sigma_t^2) and too small otherwise; the forward
    choice is exact for unit-variance VP data (VE: infinitely wide data) and too large
    otherwise (Ho et al. 2020, Sec. 3.2, note the same two extremes). Each step's error in
    the variance is O(v^2 / sigma_t^2), with opposite signs for the two bounds; for the data in
    between (modes narrower than the noise, as at the end of sampling) the midpoint halves the
    worst case and its error changes sign along the trajectory. Measured on a mixture with
    modes of std 0.1-0.6 at 100 uniform steps (benchmarks/reference_parity_benchmark.py): TV
    1.00-1.04x the floor, against 1.07-1.31 (posterior) and 1.08-1.22 (forward). Analytic-DPM
    (Bao et al. 2022) likewise finds the optimal variance between the two bounds.
    """
    posterior = tr.v * tr.sigma_s**2 / tr.sigma_t**2
    if variance == "forward":
        return tr.v
    if variance == "posterior":
        return posterior
    return 0.5 * (tr.v + posterior)


@dataclass(frozen=True)
class ReverseDiffusionPredictor:
    """x_next = x - (a - 1) x + v s(x, t) + sqrt(c) z: the reverse of the discretised forward SDE.

    The forward step x_t = x_s + (a - 1) x_s + sqrt(v) z (f_i = (a - 1) x, G_i^2 = v; Eq. 45),
    reversed as in Song et al. (2021), Eq. 46, appendix E ("ReverseDiffusionPredictor").
    ``variance="forward"`` takes c = G_i^2 = v, the published step: for VE this is the reference
    exactly; for VP it is the reference with sqrt(1 - beta_i) replaced by the exact ratio
    a = alpha(t)/alpha(t_next) and beta_i by the exact v. The default ``"midpoint"`` takes
    c = (v + v sigma_s^2/sigma_t^2)/2 (see :func:`step_variance`): with c = v, narrow modes come
    out too wide (std 0.113 for a mode of std 0.1 at 100 VP steps). Weak order 1. One score
    evaluation.
    """

    requires: ClassVar[tuple[str, ...]] = ("score", "marginal")
    variance: str = "midpoint"

    def __post_init__(self) -> None:
        check_variance(self.variance)

    def update(
        self, equation: Equation, x: Tensor, t: Tensor, t_next: Tensor, noise: NoiseSource
    ) -> Tensor:
        tr = transition(equation, t, t_next, x)
        a, v = append_dims(tr.a, x.ndim), append_dims(tr.v, x.ndim)
        c = append_dims(step_variance(self.variance, tr), x.ndim)
        score = equation.score(x, batch_time(t, x))
        z = standard_normal(noise, t, t_next, x)
        return (2.0 - a) * x + v * score + c.sqrt() * z


@dataclass(frozen=True)
class AncestralPredictor:
    """x_next = mean + sqrt(c) z, mean = (x + v s(x, t))/a: the posterior at the Tweedie x0_hat.

    x0_hat = (x + sigma_t^2 s(x, t)) / alpha_t (Tweedie), and with s = t_next the DDPM
    posterior mean is (a sigma_s^2 / sigma_t^2) x + (alpha_s v / sigma_t^2) x0_hat, which
    simplifies to (x + v s)/a. Ho et al. (2020), Eq. 6-7 and Algorithm 2; Song et al. (2021),
    Eq. 4 and appendix F, Eq. 47. For VP this mean is the reference's (x + beta_i s)/sqrt(1 -
    beta_i) with beta_i replaced by the exact 1 - a^2; for VE it is x + (sigma_t^2 - sigma_s^2) s.
    The noise variance c (``variance``, see :func:`step_variance`):

    - ``"midpoint"`` (default, the best measured): (v + beta_tilde)/2;
    - ``"forward"``: v (DDPM's sigma^2 = beta; the reference's VP ancestral step);
    - ``"posterior"``: beta_tilde = v sigma_s^2/sigma_t^2 (DDPM's sigma^2 = beta_tilde; the
      reference's VE step). It ignores x0_hat's own uncertainty, so narrow modes come out too
      narrow on coarse grids (std 0.081 for a mode of std 0.1 at 100 VP steps);
    - ``"ddim"``: DDIM's eta (Song, Meng & Ermon 2021, Eq. 12 and 16): c = eta^2 beta_tilde and
      mean = alpha_s x0_hat + sqrt(sigma_s^2 - c) eps_hat, eps_hat = (x - alpha_t x0_hat)/sigma_t;
      eta = 1 is "posterior", eta = 0 the deterministic DDIM step.

    Weak order 1 (eta = 0: order 1 on the probability-flow ODE). One score evaluation.
    """

    requires: ClassVar[tuple[str, ...]] = ("score", "marginal")
    variance: str = "midpoint"
    eta: float = 1.0

    def __post_init__(self) -> None:
        check_variance(self.variance, (*VARIANCES, "ddim"))
        eta = self.eta
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
            raise ValueError(f"eta must be a number in [0, 1], got {eta!r}")

    def update(
        self, equation: Equation, x: Tensor, t: Tensor, t_next: Tensor, noise: NoiseSource
    ) -> Tensor:
        tr = transition(equation, t, t_next, x)
        a, v = append_dims(tr.a, x.ndim), append_dims(tr.v, x.ndim)
        score = equation.score(x, batch_time(t, x))
        z = standard_normal(noise, t, t_next, x)
        if self.variance != "ddim":
            c = append_dims(step_variance(self.variance, tr), x.ndim)
            return (x + v * score) / a + c.sqrt() * z
        alpha_t, alpha_s = append_dims(tr.alpha_t, x.ndim), append_dims(tr.alpha_s, x.ndim)
        sigma_t, sigma_s = append_dims(tr.sigma_t, x.ndim), append_dims(tr.sigma_s, x.ndim)
        c = self.eta**2 * v * sigma_s**2 / sigma_t**2
        x0_hat = (x + sigma_t**2 * score) / alpha_t
        eps_hat = -sigma_t * score
        return alpha_s * x0_hat + (sigma_s**2 - c).clamp_min(0.0).sqrt() * eps_hat + c.sqrt() * z
