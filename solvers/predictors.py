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


@dataclass(frozen=True)
class ReverseDiffusionPredictor:
    """x_next = x - (a - 1) x + v s(x, t) + sqrt(v) z: the reverse of the discretised forward SDE.

    The forward step x_t = x_s + (a - 1) x_s + sqrt(v) z (f_i = (a - 1) x, G_i^2 = v; Eq. 45),
    reversed as in Song et al. (2021), Eq. 46, appendix E ("ReverseDiffusionPredictor"). For
    VE this is the reference exactly; for VP it is the reference with sqrt(1 - beta_i)
    replaced by the exact ratio a = alpha(t)/alpha(t_next). Weak order 1. One score evaluation.
    """

    requires: ClassVar[tuple[str, ...]] = ("score", "marginal")

    def update(
        self, equation: Equation, x: Tensor, t: Tensor, t_next: Tensor, noise: NoiseSource
    ) -> Tensor:
        tr = transition(equation, t, t_next, x)
        a, v = append_dims(tr.a, x.ndim), append_dims(tr.v, x.ndim)
        score = equation.score(x, batch_time(t, x))
        z = standard_normal(noise, t, t_next, x)
        return (2.0 - a) * x + v * score + v.sqrt() * z


@dataclass(frozen=True)
class AncestralPredictor:
    """x_next ~ q(x_s | x_t, x0_hat): the forward posterior at the Tweedie estimate of x_0.

    x0_hat = (x + sigma_t^2 s(x, t)) / alpha_t (Tweedie), then with s = t_next
        mean = (a sigma_s^2 / sigma_t^2) x + (alpha_s v / sigma_t^2) x0_hat,
        var  = v sigma_s^2 / sigma_t^2.
    Ho et al. (2020), Eq. 6–7 (DDPM); Song et al. (2021), Eq. 4 and appendix F, Eq. 47. For
    VE it reduces to the reference SMLD step (Eq. 47) x + (sigma_t^2 - sigma_s^2) s with
    variance (sigma_t^2 - sigma_s^2) sigma_s^2 / sigma_t^2; for VP it is the exact posterior
    where the reference (Eq. 4) uses (x + beta_i s)/sqrt(1 - beta_i) + sqrt(beta_i) z (equal
    to first order in beta_i). For Gaussian data its mean is exact at any step size. Weak
    order 1. One score evaluation.
    """

    requires: ClassVar[tuple[str, ...]] = ("score", "marginal")

    def update(
        self, equation: Equation, x: Tensor, t: Tensor, t_next: Tensor, noise: NoiseSource
    ) -> Tensor:
        tr = transition(equation, t, t_next, x)
        a, v = append_dims(tr.a, x.ndim), append_dims(tr.v, x.ndim)
        alpha_t, alpha_s = append_dims(tr.alpha_t, x.ndim), append_dims(tr.alpha_s, x.ndim)
        var_t, var_s = append_dims(tr.sigma_t**2, x.ndim), append_dims(tr.sigma_s**2, x.ndim)
        score = equation.score(x, batch_time(t, x))
        x0_hat = (x + var_t * score) / alpha_t
        mean = (a * var_s / var_t) * x + (alpha_s * v / var_t) * x0_hat
        std = (v * var_s / var_t).sqrt()
        return mean + std * standard_normal(noise, t, t_next, x)
