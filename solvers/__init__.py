"""Numerical integrators for reverse-time SDEs and ODEs, independent of any SDE family.

A solver integrates an :class:`Equation` (plain callables) over a time grid through
:func:`integrate`; it knows nothing of networks, SDE classes or configs.
"""

from .base import Solver
from .dopri5 import Dopri5
from .dpm_solver import DPMSolver
from .dpm_solver_pp import DPMSolverPP
from .dpm_solver_pp_sde import DPMSolverPPSDE
from .edm_heun import EDMHeun
from .equation import Equation
from .euler_maruyama import EulerMaruyama
from .explicit_rk import RK4, Euler, Heun
from .gotta_go_fast import GottaGoFast
from .grids import KarrasGrid, LogSNRGrid, QuadraticGrid, TabulatedGrid, UniformGrid
from .integrate import NonFiniteStateError, Solution, integrate
from .noise import BrownianNoise, GeneratorNoise
from .predictor_corrector import PredictorCorrector
from .restart import Restart
from .scipy_ode import ScipyODE
from .seeded_noise import SeededNoise
from .torchsde_backend import TorchSDE
from .unipc import UniPC

__all__ = [
    "RK4",
    "BrownianNoise",
    "DPMSolver",
    "DPMSolverPP",
    "DPMSolverPPSDE",
    "Dopri5",
    "EDMHeun",
    "Equation",
    "Euler",
    "EulerMaruyama",
    "GeneratorNoise",
    "GottaGoFast",
    "Heun",
    "KarrasGrid",
    "LogSNRGrid",
    "NonFiniteStateError",
    "PredictorCorrector",
    "QuadraticGrid",
    "Restart",
    "ScipyODE",
    "SeededNoise",
    "Solution",
    "Solver",
    "TabulatedGrid",
    "TorchSDE",
    "UniPC",
    "UniformGrid",
    "integrate",
]
