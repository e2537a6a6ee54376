"""The predictor–corrector sampler of Song et al. (2021), Algorithms 1–5 and appendix G."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from .base import Solver
from .correctors import (
    AnnealedLangevinCorrector,
    Corrector,
    LangevinCorrector,
    NoCorrector,
    check_n_steps,
    check_snr,
    check_step_size,
)
from .equation import Equation
from .noise import NoiseSource
from .predictors import (
    AncestralPredictor,
    EulerMaruyamaPredictor,
    Predictor,
    ReverseDiffusionPredictor,
)

PREDICTORS: dict[str, type] = {
    "euler_maruyama": EulerMaruyamaPredictor,
    "reverse_diffusion": ReverseDiffusionPredictor,
    "ancestral": AncestralPredictor,
}
CORRECTORS: dict[str, type] = {
    "none": NoCorrector,
    "langevin": LangevinCorrector,
    "annealed_langevin": AnnealedLangevinCorrector,
}


def _pick(kind: str, name: Any, table: dict[str, type]) -> type:
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"{kind} must be one of {', '.join(table)}; got {name!r}")
    return table[name]


@dataclass(frozen=True)
class PredictorCorrector(Solver):
    """Per step: a corrector at t (Langevin MCMC on p_t), then a predictor from t to t_next.

    Song et al. (2021), appendix G: Algorithms 2–3 (VE and VP) and 4–5 (the Langevin
    correctors). The order is the reference code's, corrector at t then predictor to t_next,
    so the state at the last grid time is not corrected (Algorithm 1 as printed runs the
    predictor first). Weak order 1, the predictor's; a corrector adds a Langevin bias that
    does not vanish as the time step shrinks (its step depends on snr, not on dt).

    Args:
        predictor: ``"euler_maruyama"``, ``"reverse_diffusion"`` (default) or ``"ancestral"``
            (see :mod:`solvers.predictors`).
        corrector: ``"annealed_langevin"`` (default), ``"langevin"`` or ``"none"``
            (see :mod:`solvers.correctors`). Annealed Langevin's step depends on t only, so
            it is batch-independent and stable in any dimension; the reference's
            ``"langevin"`` with a per-sample step blows up in low dimensions (where the
            score norm nears 0), so use it with ``step_size="batch"`` there.
        snr: the corrector's target signal-to-noise ratio r > 0 (the reference's default,
            0.16; Song et al. 2021 tune it per model, Table 5).
        n_steps: corrector steps per time step (M in Algorithm 1), an integer >= 1.
        step_size: ``"per_sample"`` (default) or ``"batch"``: whose norms set the Langevin
            step (see :class:`~solvers.correctors.LangevinCorrector`).
        variance: the predictor's noise variance, for ``"reverse_diffusion"`` and
            ``"ancestral"``: ``"midpoint"`` (default, measured best), ``"forward"`` (the
            published steps' v = beta), ``"posterior"`` (beta_tilde) or, ancestral only,
            ``"ddim"`` (with ``eta``); see :func:`solvers.predictors.step_variance`. None: the
            predictor's default. Euler–Maruyama has no such choice (refused).
        eta: DDIM's eta in [0, 1], with ``variance="ddim"`` only.

    NFE per step: 1 (predictor) + ``n_steps`` (corrector), or 1 with ``corrector="none"``.
    Needs the equation's score and marginal, except Euler–Maruyama with no corrector, which
    needs only the drift and diffusion; :meth:`needs` lists what the chosen parts use.
    """

    predictor: str = "reverse_diffusion"
    corrector: str = "annealed_langevin"
    snr: float = 0.16
    n_steps: int = 1
    step_size: str = "per_sample"
    variance: str | None = None
    eta: float = 1.0
    _parts: tuple[Predictor, Corrector] = field(init=False, repr=False, compare=False)

    order: ClassVar[float] = 1.0
    stochastic: ClassVar[bool] = True
    equation: ClassVar[str] = "sde"
    requires: ClassVar[tuple[str, ...]] = ("score", "marginal")  # the most any choice needs

    def __post_init__(self) -> None:
        if self.corrector is None:  # YAML null
            object.__setattr__(self, "corrector", "none")
        predictor_cls = _pick("predictor", self.predictor, PREDICTORS)
        corrector_cls = _pick("corrector", self.corrector, CORRECTORS)
        check_snr(self.snr)
        check_n_steps(self.n_steps)
        check_step_size(self.step_size)
        if corrector_cls is LangevinCorrector:
            corrector = LangevinCorrector(self.snr, self.n_steps, self.step_size)
        elif corrector_cls is AnnealedLangevinCorrector:
            corrector = AnnealedLangevinCorrector(self.snr, self.n_steps)
        else:
            corrector = corrector_cls()
        kwargs: dict[str, Any] = {}
        if self.variance is not None:
            if predictor_cls is EulerMaruyamaPredictor:
                raise ValueError(
                    "variance applies to the reverse_diffusion and ancestral predictors; "
                    "euler_maruyama's noise is g(t) dW"
                )
            kwargs["variance"] = self.variance
        if self.variance == "ddim" and predictor_cls is AncestralPredictor:
            kwargs["eta"] = self.eta
        elif self.eta != 1.0 or self.variance == "ddim":
            raise ValueError(
                f"eta applies to the ancestral predictor with variance='ddim' only; got "
                f"predictor={self.predictor!r}, variance={self.variance!r}, eta={self.eta!r}"
            )
        object.__setattr__(self, "_parts", (predictor_cls(**kwargs), corrector))

    @property
    def nfe_per_step(self) -> int:
        """Score or drift evaluations per step: 1 + n_steps, or 1 without a corrector."""
        return 1 + self._parts[1].n_evals

    def needs(self) -> tuple[str, ...]:
        """The optional Equation fields the chosen predictor and corrector use."""
        names = self._parts[0].requires + self._parts[1].requires
        return tuple(dict.fromkeys(names))

    def check(self, equation: Equation) -> None:
        """Refuse an ODE, or an equation lacking a field the chosen parts use."""
        desc = f"PredictorCorrector(predictor={self.predictor!r}, corrector={self.corrector!r})"
        if not equation.stochastic:
            what = (
                "predictor injects"
                if self.corrector == "none"
                else f"predictor and the {self.corrector} corrector inject"
            )
            raise ValueError(
                f"{desc} samples the reverse-time SDE: its {self.predictor} {what} noise, but "
                "the equation is not stochastic (no diffusion term, i.e. the probability-flow "
                "ODE); build the reverse SDE or use an ODE solver"
            )
        missing = [name for name in self.needs() if getattr(equation, name) is None]
        if missing:
            raise ValueError(f"{desc} needs the equation's {', '.join(missing)}, which is not set")

    def step(
        self,
        equation: Equation,
        x: Tensor,
        t: Tensor,
        t_next: Tensor,
        state: Any,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, Any]:
        predictor, corrector = self._parts
        x = corrector.update(equation, x, t, t_next, noise)
        return predictor.update(equation, x, t, t_next, noise), state
