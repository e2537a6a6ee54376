"""The stochastic fast samplers: the stochastic Adams exponential integrator and Gotta Go Fast.

Known answers: for Gaussian data the score is linear, so a sampler's output is an affine map
of the prior draw and its noise draws; its variance is computed exactly (no Monte Carlo) by
feeding unit vectors as noise, and its weak order is the slope of the variance error.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sde_diffusion.datasets import eight_gaussians, unequal_mixture
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.reverse import reverse_sde
from sde_diffusion.sampling import sample
from sde_diffusion.sde import VPSDE
from solvers.dpm_solver_pp_sde import DPMSolverPPSDE, adams_weights
from solvers.equation import Equation
from solvers.gotta_go_fast import GottaGoFast
from solvers.grids import LogSNRGrid
from solvers.integrate import NonFiniteStateError, integrate

from .conftest import UnitNoise, make_sde

CONF = Path(__file__).resolve().parents[1] / "conf" / "solver"
MU, S = 1.0, 0.3  # Gaussian data N(MU, S^2) in every coordinate


def exact_moments(solver, sde, steps: int) -> tuple[float, float]:
    """Errors of the output mean and variance for data N(MU, S^2), started from exact p_T.

    The map (x_T, xi_1, xi_2, ...) -> x_eps is affine and acts alike on every coordinate, so
    with x_T = m_T + sqrt(v_T) e_0 and draw k = e_(k+1), coordinate 0 holds the response to
    the prior, coordinate k+1 that to draw k and the last coordinate the mean.
    """

    def score(x, t):
        alpha, sigma = (v[:, None] for v in sde.marginal(t))
        return (alpha * MU - x) / (alpha**2 * S**2 + sigma**2)

    grid = LogSNRGrid()(sde.T, sde.eps, steps, noise_level=sde.noise_level)
    ends = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
    alpha, sigma = sde.marginal(ends)
    x = torch.full((1, steps + 2), float(alpha[0] * MU), dtype=torch.float64)
    x[0, 0] += math.sqrt(float(alpha[0] ** 2 * S**2 + sigma[0] ** 2))
    out = integrate(solver, reverse_sde(sde, score), x, grid, noise=UnitNoise()).x[0]
    mean, var = out[-1], ((out[:-1] - out[-1]) ** 2).sum()
    return float(mean - alpha[1] * MU), float(var - (alpha[1] ** 2 * S**2 + sigma[1] ** 2))


# --- the stochastic Adams exponential integrator ------------------------------------------
@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize(
    ("orders", "tau", "low", "high"),
    [
        ((1, 0), 1.0, 0.8, 1.2),
        ((2, 0), 1.0, 1.8, 2.3),
        ((2, 2), 1.0, 1.8, 3.5),
        ((3, 0), 0.5, 1.8, 3.5),
    ],
)
def test_weak_order_on_the_exact_variance(sde_name, orders, tau, low, high):
    """The log-log slope of the exact variance error against the step count lies in [low, high].

    Measured slopes over N = 32..256 (log-SNR grid): (1, 0) 0.91-0.95, (2, 0) 2.03-2.07,
    (2, 2) 2.9-3.0 (one order above the claimed 2 on Gaussian data), (3, 0) at tau = 1/2
    2.2-2.5 (capped at 2 asymptotically). The mean is exact (error < 1e-12) for any grid:
    along the mean path D is constant and the exponential integrator is exact for that, so a
    wrong linear coefficient would show at once.
    """
    sde, solver = make_sde(sde_name), DPMSolverPPSDE(*orders, tau=tau)
    steps = [32, 64, 128, 256]
    errors = [exact_moments(solver, sde, n) for n in steps]
    assert max(abs(m) for m, _ in errors) < 1e-12
    slope = -np.polyfit(np.log(steps), np.log([abs(v) for _, v in errors]), 1)[0]
    assert low <= slope <= high, (orders, slope, errors)
    assert min(solver.order, 2) <= slope + 0.2


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
def test_tau_levels_window(sde_name):
    """tau only on steps starting at a noise level in (lo, hi], the probability-flow ODE
    elsewhere: every member of the family has the marginals of the forward process, so the
    exact variance still converges to the truth, at the solver's order.

    - (0, inf) is the default solver, to the last bit;
    - a window above every level lets no noise in (the response to each draw is exactly 0)
      and is the deterministic solver: variance error slope over N = 32..256 measured 1.8-2.4
      (the error changes sign near N = 64, which flattens the fit);
    - a window (0.1, 1] lets noise in and converges: slopes measured 2.7-2.8 (the switch
      between tau = 1 and 0 falls on a grid point, so no step mixes two members).
    """
    sde = make_sde(sde_name)

    def run(solver, steps):
        grid = LogSNRGrid()(sde.T, sde.eps, steps, noise_level=sde.noise_level)
        alpha0, sigma0 = sde.marginal(torch.tensor([sde.T], dtype=torch.float64))
        x = torch.full((1, steps + 2), float(alpha0[0] * MU), dtype=torch.float64)
        x[0, 0] += math.sqrt(float(alpha0[0] ** 2 * S**2 + sigma0[0] ** 2))

        def score(x, t):
            alpha, sigma = (v[:, None] for v in sde.marginal(t))
            return (alpha * MU - x) / (alpha**2 * S**2 + sigma**2)

        return integrate(solver, reverse_sde(sde, score), x, grid, noise=UnitNoise()).x[0]

    default, everywhere = DPMSolverPPSDE(), DPMSolverPPSDE(tau_levels=(0.0, math.inf))
    assert torch.equal(run(default, 24), run(everywhere, 24))

    def response(solver):  # to each draw: its coordinate minus the mean's
        out = run(solver, 24)
        return out[1:-1] - out[-1]

    never = DPMSolverPPSDE(tau_levels=(1e9, math.inf))
    assert torch.count_nonzero(response(never)) == 0  # no draw reaches the output
    assert torch.count_nonzero(response(DPMSolverPPSDE(tau_levels=(0.1, 1.0)))) > 0
    steps = [32, 64, 128, 256]
    for solver, low in [(never, 1.5), (DPMSolverPPSDE(tau_levels=(0.1, 1.0)), 2.0)]:
        errors = [exact_moments(solver, sde, n) for n in steps]
        assert max(abs(m) for m, _ in errors) < 1e-12
        slope = -np.polyfit(np.log(steps), np.log([abs(v) for _, v in errors]), 1)[0]
        assert slope >= low, (solver.tau_levels, slope, errors)


def test_adams_weights_integrate_polynomials_exactly():
    """c int_0^h e^(-c(h-u)) P(u) du through the Lagrange weights, against the closed forms."""
    lam_s, lam_t, c = (
        torch.tensor(0.3, dtype=torch.float64),
        torch.tensor(1.1, dtype=torch.float64),
        2.0,
    )
    nodes = [lam_s, lam_s - 0.5, lam_s - 0.9]
    w = adams_weights(nodes, lam_s, lam_t, c)
    h = float(lam_t - lam_s)
    assert float(sum(w)) == pytest.approx(1 - math.exp(-c * h), rel=1e-14)
    # P(lam) = lam - lam_s: c int_0^h e^(-c(h-u)) u du = h - (1 - e^(-ch))/c
    lin = sum(wj * float(nj - lam_s) for wj, nj in zip(w, nodes, strict=True))
    assert float(lin) == pytest.approx(h - (1 - math.exp(-c * h)) / c, rel=1e-13)


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("mixture", [eight_gaussians, unequal_mixture])
def test_default_config_reaches_the_floor_at_20_nfe(sde_name, mixture):
    """The shipped config at 20 NFE: TV of a 32 x 32 histogram (n = 20 000) <= 1.25 x floor.

    Measured at n = 50 000 over two seeds: 0.93-1.05 x the floor on every SDE and mixture
    (the issue's target is 1.25 at <= 20 NFE); at n = 20 000 the floor is larger and a bias
    of the same size shows less, so 1.25 leaves room for the sampling noise of the ratio.
    """
    sde, data = make_sde(sde_name), mixture(dtype=torch.float64)
    solver = instantiate(OmegaConf.load(CONF / "dpm_solver_pp_sde.yaml"))
    res = sample(
        sde,
        data.score_fn(sde),
        solver,
        (20_000, 2),
        steps=20,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    )
    assert res.nfe == 20
    tv = tv_to_mixture(res.x, data.at(sde.eps, sde), bins=32)
    assert tv.ratio < 1.25, (tv.tv, tv.floor)


@pytest.mark.parametrize(
    ("kwargs", "nfe"), [({}, 12), ({"final_corrector": True}, 13), ({"corrector_order": 0}, 12)]
)
def test_one_evaluation_per_step(kwargs, nfe):
    sde, data = VPSDE(), unequal_mixture(dtype=torch.float64)
    calls = 0

    def score(x, t):
        nonlocal calls
        calls += 1
        return data.score(x, t, sde)

    res = sample(sde, score, DPMSolverPPSDE(**kwargs), (8, 2), steps=12, dtype=torch.float64)
    assert res.nfe == calls == nfe


def test_dpm_solver_pp_sde_refuses_bad_input():
    for kwargs, match in [
        ({"predictor_order": 0}, r"predictor_order must be an integer in \[1, 3\]"),
        ({"predictor_order": 4}, "predictor_order"),
        ({"predictor_order": 2.0}, "predictor_order"),
        ({"corrector_order": -1}, r"corrector_order must be an integer in \[0, 3\]"),
        ({"corrector_order": True}, "corrector_order"),
        ({"tau": 0.0}, r"tau must be a number in \(0, 10"),
        ({"tau": -1.0}, "tau"),
        ({"tau": float("nan")}, "tau"),
        ({"lower_order_final": 1}, "lower_order_final"),
        ({"grid": "logsnr"}, "grid"),
        ({"tau_levels": (1.0, 0.5)}, r"tau_levels must be None or \(lo, hi\)"),
        ({"tau_levels": (-1.0, 2.0)}, "tau_levels"),
        ({"tau_levels": (0.1,)}, "tau_levels"),
        ({"tau_levels": (0.1, float("nan"))}, "tau_levels"),
        ({"tau_levels": ("0.1", 2.0)}, "tau_levels"),
    ]:
        with pytest.raises(ValueError, match=match):
            DPMSolverPPSDE(**kwargs)
    data, sde = unequal_mixture(), VPSDE()
    with pytest.warns(UserWarning, match="order is lowered"):
        sample(sde, data.score_fn(sde), DPMSolverPPSDE(predictor_order=3), (4, 2), steps=2)
    with pytest.raises(ValueError, match="given an ODE"):
        integrate(DPMSolverPPSDE(), Equation(drift=lambda x, t: -x), torch.ones(2, 2), [1.0, 0.5])


def test_clipped_log_snr_grid():
    """level_max / level_min: the clipped ends take one step each, the rest is log-uniform."""
    sde = VPSDE()
    t = LogSNRGrid(level_min=0.02, level_max=5.0)(1.0, 1e-3, 8, noise_level=sde.noise_level)
    levels = sde.noise_level(t)
    assert t[0] == 1.0 and t[-1] == 1e-3 and t.numel() == 9
    assert float(levels[1]) == pytest.approx(5.0, rel=1e-9)
    assert float(levels[-2]) == pytest.approx(0.02, rel=1e-9)
    ratios = levels[2:-1] / levels[1:-2]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-9)
    plain = LogSNRGrid()(1.0, 1e-3, 2, noise_level=sde.noise_level)
    assert torch.equal(LogSNRGrid(0.02, 5.0)(1.0, 1e-3, 2, noise_level=sde.noise_level), plain)
    for kwargs in ({"level_min": 0.0}, {"level_max": -1.0}, {"level_min": 2.0, "level_max": 1.0}):
        with pytest.raises(ValueError, match="level_m"):
            LogSNRGrid(**kwargs)


# --- Gotta Go Fast ----------------------------------------------------------------------
K_OU = 5.0  # dx = K x dt + dW backwards from t = 1 to 0, x(1) = 0: Var x(0) = (1 - e^-2K)/2K
OU_VAR = (1 - math.exp(-2 * K_OU)) / (2 * K_OU)


def ou_variance_error(solver, n=100_000, seed=0):
    eq = Equation(drift=lambda x, t: K_OU * x, diffusion=lambda t: torch.ones_like(t))
    x0 = torch.zeros(n, 1, dtype=torch.float64)
    grid = torch.tensor([1.0, 0.0], dtype=torch.float64)
    sol = integrate(solver, eq, x0, grid, generator=torch.Generator().manual_seed(seed))
    return float(sol.x.var()) / OU_VAR - 1, sol


def test_gotta_go_fast_error_falls_with_tolerance_and_nfe_is_reported():
    """Relative variance error of a reverse Ornstein-Uhlenbeck run at n = 100 000 (s.e. 0.45%).

    Measured over 3 seeds: -14.3..-14.9% (tol 0.2, 54 NFE), -2.3..-3.9% (0.05, 120 NFE),
    -0.2..+0.1% (0.01, 268 NFE). The paper's redraw after a rejection (memory = 0) keeps the
    small draws: -12.6..-13.3% even at tol 0.01, which pins down why the Brownian memory.
    """
    errors, nfes = [], []
    for tol in (0.2, 0.05, 0.01):
        err, sol = ou_variance_error(GottaGoFast(rtol=tol, atol=tol))
        errors.append(err)
        nfes.append(sol.nfe)
        assert sol.rejected > 0 and sol.steps > 0
    assert nfes[0] < nfes[1] < nfes[2]
    assert abs(errors[0]) > abs(errors[1]) > abs(errors[2])
    assert abs(errors[2]) < 0.02
    biased, _ = ou_variance_error(GottaGoFast(rtol=0.01, atol=0.01, memory=0))
    assert biased < -0.08


def test_gotta_go_fast_steps_per_sample_and_freezes_finished_samples():
    """A stiff sample takes more steps; finished samples leave the batch at exactly t_end."""
    batches, times = [], []

    def drift(x, t):  # coordinate 1 marks the stiff sample (rate 40) and does not move
        batches.append(x.shape[0])
        times.append(t.clone())
        rate = torch.where(x[:, 1:] > 0.5, 40.0, 0.5)
        return torch.cat([rate * x[:, :1], torch.zeros_like(x[:, 1:])], dim=1)

    eq = Equation(drift=drift, diffusion=lambda t: 0.05 * torch.ones_like(t))
    x0 = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    grid = torch.tensor([1.0, 0.25], dtype=torch.float64)
    sol = integrate(
        GottaGoFast(rtol=0.01, atol=0.01), eq, x0, grid, generator=torch.Generator().manual_seed(0)
    )
    assert sol.nfe == len(batches) and sol.nfe % 2 == 0
    assert batches[0] == 2 and batches[-1] == 1  # the easy sample finished first
    every = torch.cat(times)
    assert float(every.min()) == 0.25 and float(every.max()) == 1.0


def test_gotta_go_fast_end_to_end_on_a_mixture():
    """Default tolerances on the unequal mixture (VE, n = 20 000): TV <= 1.3 x floor.

    Measured at n = 50 000: 1.09 (VE), 1.01 (VP), 1.09 (sub-VP) at 290-500 NFE.
    """
    sde, data = make_sde("ve"), unequal_mixture(dtype=torch.float64)
    solver = instantiate(OmegaConf.load(CONF / "gotta_go_fast.yaml"))
    res = sample(
        sde,
        data.score_fn(sde),
        solver,
        (20_000, 2),
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    )
    tv = tv_to_mixture(res.x, data.at(sde.eps, sde), bins=32)
    assert tv.ratio < 1.3 and res.nfe < 1000, (tv.ratio, res.nfe)


def test_gotta_go_fast_refuses_bad_input():
    for kwargs, match in [
        ({"rtol": 0.0}, r"rtol must be a number in \(0, 1\)"),
        ({"atol": -1e-3}, "atol"),
        ({"rtol": 1.5}, "rtol"),
        ({"first_step": 0.0}, "first_step"),
        ({"safety": 1.5}, "safety"),
        ({"exponent": 0.0}, "exponent"),
        ({"norm": "l3"}, "norm must be one of"),
        ({"memory": -1}, "memory"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"extrapolate": "yes"}, "extrapolate"),
    ]:
        with pytest.raises(ValueError, match=match):
            GottaGoFast(**kwargs)
    eq = Equation(drift=lambda x, t: 3.0 * x, diffusion=lambda t: torch.ones_like(t))
    grid = torch.tensor([1.0, 0.0], dtype=torch.float64)
    with pytest.raises(RuntimeError, match="max_iterations=3"):
        integrate(GottaGoFast(rtol=1e-4, atol=1e-4, max_iterations=3), eq, torch.zeros(4, 1), grid)
    nan = Equation(drift=lambda x, t: torch.full_like(x, torch.nan), diffusion=eq.diffusion)
    with pytest.raises(NonFiniteStateError):
        integrate(GottaGoFast(), nan, torch.zeros(4, 1, dtype=torch.float64), grid)
