"""Score-based generative modelling through SDEs (Song et al., ICLR 2021)."""

from .forward import simulate_forward
from .grid_tuning import GridTuning, tune_grid
from .likelihood import LikelihoodResult, log_likelihood
from .mixture import GaussianMixture
from .reverse import probability_flow_ode, reverse_sde, tweedie_denoise
from .sampling import SampleResult, sample
from .sde import SDE, VESDE, VPSDE, SubVPSDE

__all__ = [
    "SDE",
    "VESDE",
    "VPSDE",
    "GaussianMixture",
    "GridTuning",
    "LikelihoodResult",
    "SampleResult",
    "SubVPSDE",
    "log_likelihood",
    "probability_flow_ode",
    "reverse_sde",
    "sample",
    "simulate_forward",
    "tune_grid",
    "tweedie_denoise",
]
