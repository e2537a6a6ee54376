"""Restart sampling (solvers.Restart): exact contraction on Gaussian data, counts, bad input.

For Gaussian data N(MU, S^2) the score is linear, so the sampler's output is an affine map of
the prior draw and its noise draws; the output variance is computed exactly by feeding unit
vectors as noise (as in test_stochastic_samplers.py).
"""

from __future__ import annotations

import math

import pytest
import torch

from sde_diffusion.datasets import unequal_mixture
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.reverse import probability_flow_ode
from sde_diffusion.sampling import sample
from solvers import Dopri5, DPMSolverPPSDE, Restart, UniPC, integrate
from solvers.grids import LogSNRGrid

from .conftest import UnitNoise, make_sde

MU, S = 1.0, 0.3


def gaussian_score(sde):
    def score(x, t):
        alpha, sigma = (v[:, None] for v in sde.marginal(t))
        return (alpha * MU - x) / (alpha**2 * S**2 + sigma**2)

    return score


def output_moments(solver, sde, steps: int, draws: int = 4) -> tuple[float, float, float]:
    """(mean error, variance error, noise level sigma/alpha at eps) at eps, exactly."""
    grid = LogSNRGrid()(sde.T, sde.eps, steps, noise_level=sde.noise_level)
    alpha, sigma = sde.marginal(torch.tensor([sde.T, sde.eps], dtype=torch.float64))
    x = torch.full((1, draws + 2), float(alpha[0] * MU), dtype=torch.float64)
    x[0, 0] += math.sqrt(float(alpha[0] ** 2 * S**2 + sigma[0] ** 2))
    eq = probability_flow_ode(sde, gaussian_score(sde))
    out = integrate(solver, eq, x, grid, noise=UnitNoise()).x[0]
    mean, var = out[-1], ((out[:-1] - out[-1]) ** 2).sum()
    exact_var = alpha[1] ** 2 * S**2 + sigma[1] ** 2
    return float(mean - alpha[1] * MU), float(var - exact_var), float(sigma[1] / alpha[1])


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
def test_restart_contracts_the_variance_error_by_the_exact_factor(sde_name):
    """A restart from t_min to noise level l leaves kappa = (S^2 + l_min^2) / (S^2 + l^2) of
    the variance error d0 the main path brought to t_min, per restart (the jump is the exact
    forward kernel; the ODE maps N(m, v_max) to N(m', v_min) exactly for Gaussian data).

    Main path: 4 UniPC steps (d0 about 5 % of the variance); restarts at the grid's end
    (level_min 0.02) with 64 steps, so the restart solve's own error is small: measured
    |d - kappa^K d0| <= 5e-4 |d0| for l = 0.5, 1, 3 and K = 1, 2 on all three SDEs; a jump
    without the alpha ratio or with the wrong spread misses by O(1). The mean stays exact.
    """
    sde = make_sde(sde_name)
    _, d0, level_end = output_moments(UniPC(), sde, 4)
    assert abs(d0) > 1e-2
    for level, k in [(0.5, 1), (1.0, 2), (3.0, 1)]:
        solver = Restart(level=level, level_min=0.02, restarts=k, restart_steps=64)
        mean, d, _ = output_moments(solver, sde, 4)
        kappa = (S**2 + level_end**2) / (S**2 + level**2)
        assert abs(mean) < 1e-12
        assert abs(d - kappa**k * d0) < 2e-3 * abs(d0), (level, k, d, kappa**k * d0)


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_interior_restart_converges_to_the_exact_law(sde_name):
    """A restart interval inside the path ([0.1, 1]), the main path going on after it: the
    variance error falls with the steps (measured at 16 / 64 main steps and 4 / 16 restart
    steps: 1e-3 -> 1e-6 relative) and the restart draws reach the output."""
    sde = make_sde(sde_name)
    errors = []
    for main, inner in [(16, 4), (64, 16)]:
        solver = Restart(level=1.0, level_min=0.1, restart_steps=inner)
        mean, d, _ = output_moments(solver, sde, main)
        assert abs(mean) < 1e-12
        errors.append(abs(d))
    assert errors[1] < errors[0] / 30, errors
    assert errors[1] < 1e-4


def test_restart_counts_its_evaluations_and_is_seeded_per_sample():
    """NFE = main steps + restarts x restart_steps; with per-sample seeds a sample does not
    depend on its batch (the jump draws through the noise source)."""
    sde = make_sde("vp")
    mixture = unequal_mixture(dtype=torch.float64)
    score = mixture.score_fn(sde)
    solver = Restart(level=1.0, level_min=0.1, restarts=2, restart_steps=3)
    res = sample(sde, score, solver, (6, 2), steps=10, seeds=range(6), dtype=torch.float64)
    assert res.nfe == 10 + 2 * 3
    part = sample(sde, score, solver, (2, 2), steps=10, seeds=[4, 5], dtype=torch.float64)
    torch.testing.assert_close(part.x, res.x[4:], rtol=0, atol=1e-12)
    other = sample(sde, score, solver, (6, 2), steps=10, seeds=range(6, 12), dtype=torch.float64)
    assert not torch.allclose(other.x, res.x)


def test_restart_config_samples_a_mixture():
    """The shipped config's settings at 20 NFE (16 main steps + 4 restart steps) on the
    project's unequal mixture, VP: TV / floor measured 0.99-1.06 (n = 20,000, 32 x 32 bins,
    seeds 0-1; the same on sub-VP, VE and the eight Gaussians, 0.99-1.06)."""
    sde = make_sde("vp")
    mixture = unequal_mixture(dtype=torch.float64)
    solver = Restart(level=0.3, level_min=0.06, restart_steps=4)
    gen = torch.Generator().manual_seed(0)
    res = sample(sde, mixture.score_fn(sde), solver, (20_000, 2), steps=16, generator=gen,
                 dtype=torch.float64)  # fmt: skip
    assert res.nfe == 20
    assert tv_to_mixture(res.x, mixture.at(sde.eps, sde), bins=32).ratio < 1.3


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"inner": DPMSolverPPSDE()}, "inner must be a deterministic fixed-step"),
        ({"inner": Dopri5()}, "inner must be a deterministic fixed-step"),
        ({"level": 0.0}, "level must be a noise level"),
        ({"level": float("inf")}, "level must be a noise level"),
        ({"level": 1.0, "level_min": 1.0}, r"level_min must be a noise level in \(0, level\)"),
        ({"level_min": -0.1}, r"level_min must be a noise level in \(0, level\)"),
        ({"restarts": 0}, "restarts must be an integer >= 1"),
        ({"restart_steps": 2.5}, "restart_steps must be an integer >= 1"),
        ({"grid": 3}, "grid must be None or a time grid callable"),
    ],
)
def test_restart_refuses_bad_parameters(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Restart(**kwargs)


def test_restart_refuses_a_path_too_short_for_its_inner_solver():
    """UniPC-2 needs two steps on the grid it is started on: a 1-step restart solve at the
    very end (nothing of the main path after it) is refused before any evaluation."""
    sde = make_sde("vp")
    calls = []

    def score(x, t):
        calls.append(1)
        return -x

    solver = Restart(level=1.0, level_min=0.011, restart_steps=1)  # only eps (0.0100) is below
    with pytest.raises(ValueError, match="at least 2 steps"):
        sample(sde, score, solver, (4, 2), steps=4, generator=torch.Generator().manual_seed(0))
    assert not calls
