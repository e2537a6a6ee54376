"""torchsde's fixed-step methods as a :class:`~solvers.base.Solver` on the driver's grid.

Design. ``torchsde.sdeint`` walks its own grid: with a fixed ``dt`` it steps uniformly and
linearly interpolates onto the query times, so a non-uniform grid (quadratic, Karras,
log-SNR) would be lost, and calling it once per step re-runs its input checks, which
evaluate the drift again (extra NFE) and read tensors on the host. Instead, each
:meth:`TorchSDE.step` builds torchsde's own stepper for the chosen method (the class that
``sdeint`` would pick, via ``torchsde._core.methods.select``) and calls its ``step(t0, t1,
y, extra)`` once, from grid[i] to grid[i+1]. So the adapter

1. steps exactly on the driver's grid, uniform or not;
2. evaluates the drift only where the method does (the driver counts these calls);
3. draws its Brownian increments from the driver's noise source, through a
   ``torchsde.BaseBrownian`` view of it, so one seeded generator (or one fixed
   :class:`~solvers.noise.BrownianNoise` path) drives it exactly as it drives our solvers;
4. makes no host synchronisation (the per-step objects are plain Python holders).

``torchsde._core.methods`` is private: this module is the only place that touches it, and
the tests run every method through it, so a change in torchsde shows up there.

Time flip (here and nowhere else). torchsde integrates forward in time, so with tau = -t
the reverse-time equation dx = f(x, t) dt + g(t) dW becomes

    dy = -f(y, -tau) dtau + g(-tau) dB(tau),   B(tau) = W(-tau),

on a state flattened to (B, D). The noise is additive (g depends on t only), so Ito and
Stratonovich coincide (reversible Heun is run as Stratonovich) and the Milstein correction
g dg/dy vanishes: we declare torchsde's ``"additive"`` noise type but keep g diagonal,
shape (B, D), by supplying the (elementwise) noise products ourselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torchsde
from torch import Tensor
from torchsde._core.methods import select

from ._utils import batch_time
from .base import Solver
from .equation import Equation
from .noise import NoiseSource

METHODS = ("euler", "milstein", "srk", "reversible_heun")

# Strong orders on additive noise: Euler-Maruyama and Milstein (Kloeden & Platen 1992,
# Sec. 10.2-10.3), Roessler's SRA1 (Roessler 2010, SIAM J. Numer. Anal. 48(3):922-952),
# reversible Heun (Kidger et al. 2021, "Efficient and accurate gradients for neural SDEs",
# NeurIPS, Sec. 3).
_ORDER = {"euler": 1.0, "milstein": 1.0, "srk": 1.5, "reversible_heun": 1.0}


class _MethodOrder:
    """``order`` of the chosen method on an instance; that of the default ``"euler"`` on the class."""

    def __get__(self, obj: TorchSDE | None, cls: type | None = None) -> float:
        return _ORDER[obj.method if obj is not None else "euler"]


class _FlippedSDE:
    """The reverse-time equation as torchsde sees it: increasing tau = -t, state (B, D)."""

    noise_type = "additive"

    def __init__(self, equation: Equation, shape: tuple[int, ...], sde_type: str) -> None:
        self.equation = equation
        self.shape = shape
        self.sde_type = sde_type

    def _time(self, tau: Tensor, y: Tensor) -> Tensor:
        return batch_time(-tau, y)

    def f(self, tau: Tensor, y: Tensor) -> Tensor:
        x = y.reshape(self.shape)
        return -self.equation.drift(x, self._time(tau, y)).reshape(y.shape)

    def g(self, tau: Tensor, y: Tensor) -> Tensor:
        return self.equation.diffusion(self._time(tau, y)).reshape(-1, 1).expand(y.shape)

    def f_and_g(self, tau: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.f(tau, y), self.g(tau, y)

    def prod(self, g: Tensor, v: Tensor) -> Tensor:
        return g * v

    def g_prod(self, tau: Tensor, y: Tensor, v: Tensor) -> Tensor:
        return self.g(tau, y) * v

    def f_and_g_prod(self, tau: Tensor, y: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return self.f(tau, y), self.g_prod(tau, y, v)

    def g_prod_and_gdg_prod(
        self, tau: Tensor, y: Tensor, v1: Tensor, v2: Tensor
    ) -> tuple[Tensor, float]:
        # Milstein's g (dg/dy) v2 term: zero, since g does not depend on y.
        return self.g_prod(tau, y, v1), 0.0


class _FlippedBrownian(torchsde.BaseBrownian):
    """B(tau) = W(-tau): the driver's noise source seen in increasing time.

    ``return_U`` gives U = int_ta^tb (B_s - B_ta) ds = h (dB/2 + H) with H the
    space-time Levy area (Foster, Lyons & Oberhauser 2020). H is the integral
    of the Brownian bridge, unchanged by reversing time. It comes from the noise source's
    optional ``space_time_levy_area(t, t_next, like)`` when it has one (a fixed path),
    else from ``noise.normal``: H ~ N(0, h/12), independent of dB.
    """

    __slots__ = ("_noise", "_like", "_levy")

    def __init__(self, noise: NoiseSource, like: Tensor, levy: str) -> None:
        self._noise = noise
        self._like = like
        self._levy = levy

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        if tb is None or return_A:
            raise NotImplementedError("only interval increments and space-time Levy area")
        like = self._like
        dw = self._noise.increment(-ta, -tb, like).reshape(like.shape[0], -1)
        if not return_U:
            return dw
        area = getattr(self._noise, "space_time_levy_area", None)
        h = tb - ta
        if area is not None:
            H = area(-ta, -tb, like)
        else:
            H = self._noise.normal(like) * (h / 12).sqrt()
        return dw, h * (0.5 * dw + H.reshape(dw.shape))

    def __repr__(self) -> str:
        return f"_FlippedBrownian({type(self._noise).__name__})"

    @property
    def dtype(self):
        return self._like.dtype

    @property
    def device(self):
        return self._like.device

    @property
    def shape(self):
        return (self._like.shape[0], math.prod(self._like.shape[1:]))

    @property
    def levy_area_approximation(self) -> str:
        return self._levy


class _NoNoise:
    """Stands in for the noise source where none is needed (building the initial state)."""

    def increment(self, t: Tensor, t_next: Tensor, like: Tensor) -> Tensor:
        raise RuntimeError("TorchSDE.init draws no noise")

    def normal(self, like: Tensor) -> Tensor:
        raise RuntimeError("TorchSDE.init draws no noise")


@dataclass(frozen=True)
class TorchSDE(Solver):
    """torchsde's fixed-step SDE integrators on the reverse-time SDE, on the driver's grid.

    ``method``: ``"euler"`` (Euler-Maruyama, identical to :class:`EulerMaruyama`, strong
    order 1 on additive noise, 1 NFE/step), ``"milstein"`` (equals Euler here since
    dg/dx = 0; 1 NFE/step), ``"srk"`` (Roessler 2010 SRA1, strong order 1.5 for additive
    noise, uses the space-time Levy area; torchsde evaluates its first stage twice, so
    3 NFE/step), ``"reversible_heun"`` (Kidger et al. 2021, Sec. 3; strong order 1 on
    additive noise; 1 NFE/step plus 1 at the start, carried in the state).
    See the module docstring for the design and the time flip.
    """

    method: str = "euler"

    order: ClassVar[float] = _MethodOrder()  # type: ignore[assignment]
    stochastic: ClassVar[bool] = True
    equation: ClassVar[str] = "sde"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")

    def _stepper(self, equation: Equation, x: Tensor, noise: NoiseSource) -> Any:
        sde_type = "stratonovich" if self.method == "reversible_heun" else "ito"
        levy = "space-time" if self.method == "srk" else "none"
        sde = _FlippedSDE(equation, tuple(x.shape), sde_type)
        bm = _FlippedBrownian(noise, x, levy)
        cls = select(method=self.method, sde_type=sde_type)
        # dt, rtol, atol and dt_min serve only torchsde's own integration loop, unused here.
        return cls(
            sde=sde, bm=bm, dt=None, adaptive=False, rtol=0.0, atol=0.0, dt_min=0.0, options={}
        )

    def init(self, equation: Equation, x: Tensor, grid: Tensor) -> Any:
        """torchsde's extra state at grid[0]: () or, for reversible Heun, (f, g, z)."""
        tau = -grid[0]
        stepper = self._stepper(equation, x, _NoNoise())
        return stepper.init_extra_solver_state(tau, x.reshape(x.shape[0], -1))

    def step(
        self,
        equation: Equation,
        x: Tensor,
        t: Tensor,
        t_next: Tensor,
        state: Any,
        noise: NoiseSource | None,
    ) -> tuple[Tensor, Any]:
        stepper = self._stepper(equation, x, noise)
        y, state = stepper.step(-t, -t_next, x.reshape(x.shape[0], -1), state)
        return y.reshape(x.shape), state
