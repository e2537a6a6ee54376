"""Fast deterministic samplers: EDM Heun, DPM-Solver, DPM-Solver++, UniPC.

Numerical checks in float64 on problems with known answers:

- Gaussian data N(m, s^2) per coordinate: p_t = N(alpha m, alpha^2 s^2 + sigma^2), and the
  probability-flow ODE maps x_T = alpha_T m + sqrt(v_T) z to x_eps = alpha_eps m + sqrt(v_eps) z
  sample by sample, for VP, sub-VP and VE marginals (only ``marginal`` and ``score`` are given
  to the solvers, never the SDE);
- point-mass data, whose data prediction is constant, so every exponential step is exact;
- exact-score 2-D mixtures end to end, measured by the TV to the exact law of x at eps.
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
from sde_diffusion.sampling import sample
from solvers._exponential import interpolant_integral, kernel_moments, phi
from solvers.dpm_solver import DPMSolver
from solvers.dpm_solver_pp import DPMSolverPP
from solvers.edm_heun import EDMHeun
from solvers.equation import Equation
from solvers.grids import KarrasGrid, LogSNRGrid
from solvers.integrate import integrate
from solvers.unipc import UniPC

from .conftest import SDE_CONFIGS, cuda, make_sde

F64 = torch.float64
CONF = Path(__file__).resolve().parents[1] / "conf" / "solver"
FAST_CONFIGS = ["heun_karras", "dpm_solver_2", "dpm_solver_3", "dpm_solver_pp_2m",
                "dpm_solver_pp_3m", "unipc"]  # fmt: skip
M = torch.tensor([1.5, -2.0], dtype=F64)
S = torch.tensor([0.5, 0.2], dtype=F64)
EPS = 1e-3


def gaussian_problem(sde):
    """The PF ODE of N(M, S^2) data as an Equation holding only ``score`` and ``marginal``."""

    def var(t):
        alpha, sigma = sde.marginal(t)
        return alpha[:, None] ** 2 * S**2 + sigma[:, None] ** 2

    def score(x, t):
        return -(x - sde.marginal(t)[0][:, None] * M) / var(t)

    def no_drift(x, t):
        raise AssertionError("the fast samplers use score and marginal only")

    eq = Equation(drift=no_drift, score=score, marginal=sde.marginal)
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    ends = torch.tensor([sde.T, EPS], dtype=F64)
    alpha, v = sde.marginal(ends)[0][:, None], var(ends)
    return eq, alpha[0] * M + v[0].sqrt() * z, alpha[1] * M + v[1].sqrt() * z


def slope(solver, sde, steps, grid=None):
    grid = LogSNRGrid() if grid is None else grid
    eq, x_t, x_eps = gaussian_problem(sde)
    errs, nfes = [], []
    for n in steps:
        sol = integrate(solver, eq, x_t, grid(sde.T, EPS, n, noise_level=sde.noise_level))
        errs.append((sol.x - x_eps).abs().max().item())
        nfes.append(sol.nfe)
    return -np.polyfit(np.log(steps), np.log(errs), 1)[0], errs, nfes


# --- convergence orders ---------------------------------------------------------------------

# (solver, step counts, slack above the order). Measured slopes, vp / subvp / ve:
# DPM-Solver-1 0.97 / 0.96 / 0.97, -2 2.04 / 2.06 / 2.04, -3 3.18 / 3.25 / 3.20;
# DPM-Solver++(2M) 2.02 / 2.01 / 2.02, (3M) 3.84 / 4.04 / 4.22; UniPC-1 1.96 / 1.91 / 1.95,
# UniPC-2 2.98 / 2.95 / 2.97; Heun 2.06 / 2.07 / 2.05.
ORDER_CASES = [
    (DPMSolver(order=1), [16, 32, 64, 128], 0.35),
    (DPMSolver(order=2), [16, 32, 64, 128], 0.35),
    (DPMSolver(order=3), [16, 32, 64, 128], 0.35),
    (DPMSolverPP(order=2, lower_order_final=False), [16, 32, 64, 128], 0.35),
    (DPMSolverPP(order=3, lower_order_final=False), [32, 64, 128, 256], 1.35),
    (UniPC(predictor_order=1, lower_order_final=False), [16, 32, 64, 128], 0.35),
    (UniPC(predictor_order=2, lower_order_final=False), [32, 64, 128, 256], 0.35),
    (EDMHeun(), [16, 32, 64, 128], 0.35),
]


@pytest.mark.parametrize("sde_name", SDE_CONFIGS)
@pytest.mark.parametrize("solver, steps, above", ORDER_CASES, ids=lambda v: repr(v)[:40])
def test_convergence_order(solver, steps, above, sde_name):
    """The log-log slope of the max error against the step count matches the declared order.

    Measured slopes above ORDER_CASES. The fitted slope differs from the order by higher-order
    terms of the error expansion; 0.35 below the order still fails a wrong coefficient, which
    drops the order by one. DPM-Solver++(3M) converges like h^4 on these step counts: its h^3
    error density ~ the third derivative of x0_hat in lambda integrates to the second
    derivative, which vanishes at both ends (the local slope falls to 3.4 by 512 steps on VP);
    hence its wider slack above. UniPC-p is of order p + 1 (the corrector). Also checks the
    NFE per step: k for DPM-Solver-k, 2 for Heun, 1 for the multistep ones.
    """
    sde = make_sde(sde_name)
    grid = KarrasGrid(7.0) if isinstance(solver, EDMHeun) else LogSNRGrid()
    p, errs, nfes = slope(solver, sde, steps, grid)
    assert solver.order - 0.35 < p < solver.order + above, (p, errs)
    assert nfes == [solver.nfe_per_step * n for n in steps]
    assert solver.nfe_per_step == {DPMSolver: getattr(solver, "order", 0), EDMHeun: 2}.get(
        type(solver), 1
    )


def test_heun_order_on_its_config_grid(sde):
    """heun_karras.yaml's clipped log-SNR grid (ends 0.3x as dense) refines everywhere, so Heun
    keeps order 2 on it: measured slopes 2.05 / 2.10 / 2.10 (vp / subvp / ve), 16-128 steps."""
    solver = instantiate(OmegaConf.load(CONF / "heun_karras.yaml"))
    p, errs, _ = slope(solver, sde, [16, 32, 64, 128], solver.grid)
    assert 1.65 < p < 2.35, (p, errs)


def test_lower_order_final_costs_little(sde):
    """The first-order final steps add ~h^2 x0_hat'(lambda) near eps, where x0_hat barely moves:
    at 64 steps the errors with and without them differ by < 25% (measured ratios 0.92-1.0;
    DPM-Solver++(3M) errs 2.7e-5 to 1.3e-4, UniPC-2 2.8e-4 to 9.2e-4)."""
    eq, x_t, x_eps = gaussian_problem(sde)
    grid = LogSNRGrid()(sde.T, EPS, 64, noise_level=sde.noise_level)
    for on, off in [
        (DPMSolverPP(order=3), DPMSolverPP(order=3, lower_order_final=False)),
        (UniPC(predictor_order=2), UniPC(predictor_order=2, lower_order_final=False)),
    ]:
        err_on = (integrate(on, eq, x_t, grid).x - x_eps).abs().max()
        err_off = (integrate(off, eq, x_t, grid).x - x_eps).abs().max()
        assert err_on < 1.25 * err_off, (err_on, err_off)


def test_point_mass_data_is_exact(sde):
    """x0_hat is constant for point-mass data, so every exponential step lands exactly.

    All divided differences of x0_hat vanish, so each multistep update is the exact one;
    DPM-Solver's noise form is exact too. Tolerance 1e-9 relative: rounding only.
    """
    target = torch.tensor([0.7, -1.2], dtype=F64)

    def score(x, t):
        alpha, sigma = sde.marginal(t)
        return -(x - alpha[:, None] * target) / sigma[:, None] ** 2

    eq = Equation(drift=lambda x, t: None, score=score, marginal=sde.marginal)
    grid = torch.tensor([sde.T, 0.3, 0.05, EPS], dtype=F64)
    alpha, sigma = sde.marginal(grid[[0, -1]])
    z = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    x_t, x_eps = alpha[0] * target + sigma[0] * z, alpha[1] * target + sigma[1] * z
    solvers = (DPMSolver(1), DPMSolver(2), DPMSolver(3), DPMSolverPP(3), UniPC(3))
    for solver in solvers:
        out = integrate(solver, eq, x_t, grid).x
        assert torch.allclose(out, x_eps, rtol=1e-9, atol=1e-9 * float(sigma[1])), solver


def test_first_order_noise_and_data_forms_agree(sde):
    """DPM-Solver-1 (noise prediction) and DPM-Solver++-1 (data prediction) are one method (DDIM)."""
    eq, x_t, _ = gaussian_problem(sde)
    grid = LogSNRGrid()(sde.T, EPS, 7, noise_level=sde.noise_level)
    a = integrate(DPMSolver(order=1), eq, x_t, grid).x
    b = integrate(DPMSolverPP(order=1), eq, x_t, grid).x
    assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_phi_and_interpolant_integral():
    """phi_j by series and by recursion agree across |z| = 1; the quadrature is exact for cubics."""
    z = torch.tensor([-1.0 - 1e-12, -1.0 + 1e-12, 1e-8, 0.5, 3.0], dtype=F64)
    for j in range(4):
        ref = [sum(float(v) ** i / math.factorial(i + j) for i in range(60)) for v in z.tolist()]
        assert torch.allclose(phi(j, z), torch.tensor(ref, dtype=F64), rtol=1e-13)
    h = torch.tensor(0.7, dtype=F64)
    nodes = [0.0, torch.tensor(-0.3, dtype=F64), torch.tensor(-0.8, dtype=F64), h]
    poly = lambda u: 1.0 - 2.0 * u + 0.5 * u**2 + 3.0 * u**3  # noqa: E731
    values = [poly(torch.as_tensor(u, dtype=F64)) for u in nodes]
    got = interpolant_integral(nodes, values, kernel_moments(h, 4, -1))
    u = torch.linspace(0, float(h), 200_001, dtype=F64)
    ref = torch.trapezoid(torch.exp(u - h) * poly(u), u)
    assert abs(float(got - ref)) < 1e-10


# --- churn ------------------------------------------------------------------------------------


def test_heun_churn_is_stochastic_and_keeps_the_marginal():
    """With S_churn > 0 Heun draws noise (``stochastic`` True on the instance) and still
    samples p_eps. 1-D Gaussian data N(1, 0.3^2), x_T drawn from the exact p_T, 100 steps,
    100 000 samples: the mean within 4 standard errors and the std within 1.5% = 4 standard
    errors (0.22% each) + 0.6% for the churned steps' discretisation (measured over 5 seeds:
    mean -1.6 to +1.8 SE, std +0.2% to +0.8%; the bias shrinks with the steps, +4.1% at 40
    steps with S_churn = 20). A wrong noise scale (l^ instead of sqrt(l^2 - l_i^2)) or a
    missing alpha is off by tens of percent."""
    from sde_diffusion.sde import VPSDE

    assert not EDMHeun().stochastic and EDMHeun(S_churn=10.0).stochastic
    assert not EDMHeun(S_churn=10.0, S_noise=0.0).stochastic
    sde, m, s, n = VPSDE(), 1.0, 0.3, 100_000
    solver = EDMHeun(S_churn=10.0, S_tmin=0.05, S_tmax=10.0)

    def law(t):
        alpha, sigma = sde.marginal(torch.tensor([t], dtype=F64))
        return float(alpha) * m, math.sqrt(float(alpha) ** 2 * s**2 + float(sigma) ** 2)

    def score(x, t):
        alpha, sigma = sde.marginal(t)
        return -(x - alpha[:, None] * m) / (alpha[:, None] ** 2 * s**2 + sigma[:, None] ** 2)

    gen = torch.Generator().manual_seed(0)
    mean_t, std_t = law(sde.T)
    x_init = mean_t + std_t * torch.randn(n, 1, generator=gen, dtype=F64)
    res = sample(sde, score, solver, (n, 1), steps=100, generator=gen, dtype=F64, x_init=x_init)
    mean, std = law(sde.eps)
    assert abs(float(res.x.mean()) - mean) < 4 * std / math.sqrt(n)
    assert abs(float(res.x.std()) / std - 1) < 0.015
    gen = torch.Generator().manual_seed(1)
    again = sample(sde, score, solver, (n, 1), steps=100, generator=gen, dtype=F64, x_init=x_init)
    assert not torch.equal(res.x, again.x)  # the churn draws from the generator


def test_heun_final_euler_saves_one_evaluation():
    from sde_diffusion.sde import VESDE

    sde = VESDE()
    eq, x_t, _ = gaussian_problem(sde)
    grid = KarrasGrid()(sde.T, EPS, 6, noise_level=sde.noise_level)
    assert integrate(EDMHeun(final_euler=True), eq, x_t, grid).nfe == 11


# --- end to end on exact-score mixtures -------------------------------------------------------

MIXTURES = {"eight_gaussians": eight_gaussians, "unequal_mixture": unequal_mixture}


@pytest.mark.parametrize("mixture", list(MIXTURES))
@pytest.mark.parametrize("sde_name", SDE_CONFIGS)
def test_unipc_within_target_at_10_nfe(sde_name, mixture):
    """The issue's target: a deterministic sampler within 1.25x the TV floor at <= 10 NFE.

    UniPC (conf/solver/unipc.yaml) at 10 NFE, n = 50 000, 64 x 64 bins (the default): measured
    1.05-1.10 with the grid clip level_min 0.05, up to 1.14 with today's 0.02 (issue 17, chosen
    for mixtures never tuned on); float64 differs from the float32 benchmark only in rounding.
    """
    sde, data = make_sde(sde_name), MIXTURES[mixture](dtype=F64)
    solver = instantiate(OmegaConf.load(CONF / "unipc.yaml"))
    res = sample(sde, data.score_fn(sde), solver, (50_000, 2), steps=10,
                 generator=torch.Generator().manual_seed(0), dtype=F64)  # fmt: skip
    assert res.nfe == 10
    tv = tv_to_mixture(res.x, data.at(sde.eps, sde), bins=64)
    assert tv.ratio < 1.25, (tv.tv, tv.floor)


MODEST_NFE = {"heun_karras": 50, "dpm_solver_2": 40, "dpm_solver_3": 21,
              "dpm_solver_pp_2m": 20, "dpm_solver_pp_3m": 20, "unipc": 10}  # fmt: skip


@pytest.mark.parametrize("sde_name", SDE_CONFIGS)
@pytest.mark.parametrize("name", FAST_CONFIGS)
def test_configs_reach_the_mixture_at_modest_nfe(name, sde_name):
    """Every fast-sampler config at a modest NFE: TV (n = 20 000, 32 x 32 bins) < 1.3x floor.

    Measured (vp / subvp / ve): Heun 50 NFE 1.03 / 1.08 / 1.05; DPM-Solver-2 40 NFE 1.09 /
    1.12 / 1.07; DPM-Solver-3 21 NFE 1.16 / 1.13 / 1.04; DPM-Solver++(2M) 20 NFE 1.04 / 1.04 /
    1.07; (3M) 20 NFE 1.07 each; UniPC 10 NFE 1.06 / 1.09 / 1.07 (before issues 13 and 17
    changed the 3M coefficients and the UniPC grid clip). Exact samples give
    1.00 +- 0.03 here, so 1.3 flags a bias of about a third of the floor.
    """
    sde, data = make_sde(sde_name), unequal_mixture(dtype=F64)
    solver = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    nfe = MODEST_NFE[name]
    per_step = {"heun_karras": 2, "dpm_solver_2": 2, "dpm_solver_3": 3}.get(name, 1)
    res = sample(sde, data.score_fn(sde), solver, (20_000, 2), steps=nfe // per_step,
                 generator=torch.Generator().manual_seed(0), dtype=F64)  # fmt: skip
    assert res.nfe == nfe
    tv = tv_to_mixture(res.x, data.at(sde.eps, sde), bins=32)
    assert tv.ratio < 1.3, (tv.tv, tv.floor)


@pytest.mark.parametrize("sde_name", SDE_CONFIGS)
def test_heun_on_its_karras_grid_reaches_the_mixture(sde_name):
    """heun_karras.yaml uses a clipped log-SNR grid (measured better); Karras' own rho = 7 grid
    stays available: at 60 NFE, n = 20 000, 32 x 32 bins, TV < 1.3x floor (measured 1.06 /
    1.12 / 1.01 for vp / subvp / ve; the config's grid 1.00 / 1.03 / 1.00)."""
    sde, data = make_sde(sde_name), unequal_mixture(dtype=F64)
    solver = instantiate(OmegaConf.load(CONF / "heun_karras.yaml"))
    res = sample(sde, data.score_fn(sde), solver, (20_000, 2), steps=30, grid=KarrasGrid(7.0),
                 generator=torch.Generator().manual_seed(0), dtype=F64)  # fmt: skip
    assert res.nfe == 60
    tv = tv_to_mixture(res.x, data.at(sde.eps, sde), bins=32)
    assert tv.ratio < 1.3, (tv.tv, tv.floor)


# --- bad input ------------------------------------------------------------------------------


def test_bad_input_is_refused():
    for make, match in [
        (lambda: DPMSolver(order=4), "order must be 1, 2 or 3"),
        (lambda: DPMSolver(order=True), "order"),
        (lambda: DPMSolverPP(order=4), "order must be one of"),
        (lambda: DPMSolverPP(variant="bh3"), "variant"),
        (lambda: DPMSolverPP(max_step_ratio=0.5), "max_step_ratio"),
        (lambda: UniPC(predictor_order=0), "order must be one of"),
        (lambda: EDMHeun(S_churn=-1.0), "S_churn"),
        (lambda: EDMHeun(S_tmin=2.0, S_tmax=1.0), "S_tmax"),
        (lambda: EDMHeun(S_noise=math.nan), "S_noise"),
    ]:
        with pytest.raises(ValueError, match=match):
            make()
    from sde_diffusion.sde import VPSDE

    eq, x_t, _ = gaussian_problem(VPSDE())
    short = torch.tensor([1.0, 0.5, EPS], dtype=F64)
    for solver in (DPMSolverPP(order=3), UniPC(predictor_order=3)):
        with pytest.raises(ValueError, match="at least 3 steps"):
            integrate(solver, eq, x_t, short)
    with pytest.raises(ValueError, match="at least 2 steps"):
        integrate(DPMSolverPP(order=2), eq, x_t, torch.tensor([1.0, EPS], dtype=F64))
    zigzag = torch.tensor([1.0, 0.2, 0.5, EPS], dtype=F64)
    for solver in (DPMSolver(2), DPMSolverPP(2), UniPC(), EDMHeun()):
        with pytest.raises(ValueError, match="monotone"):
            integrate(solver, eq, x_t, zigzag)
    with pytest.raises(ValueError, match="needs the equation's marginal"):
        integrate(DPMSolver(), Equation(drift=eq.drift, score=eq.score), x_t, short)


@cuda
@pytest.mark.parametrize("name", FAST_CONFIGS)
def test_no_host_sync_in_steps_on_cuda(name):
    """Steps run under torch.cuda.set_sync_debug_mode("error"): any host sync raises."""
    from sde_diffusion.reverse import probability_flow_ode
    from sde_diffusion.sde import VPSDE
    from solvers.noise import GeneratorNoise

    sde, data = VPSDE(), unequal_mixture()
    solver = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    solver = EDMHeun(S_churn=5.0) if name == "heun_karras" else solver
    eq = probability_flow_ode(sde, data.score_fn(sde))
    grid = solver.grid(sde.T, sde.eps, 8, noise_level=sde.noise_level).to("cuda", torch.float32)
    x = torch.randn(256, 2, device="cuda")
    data.score(x, torch.full((256,), 0.5, device="cuda"), sde)  # parameters to the device
    noise = GeneratorNoise(torch.Generator(device="cuda").manual_seed(0))
    state = solver.init(eq, x, grid)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(8):
            x, state = solver.step(eq, x, grid[i], grid[i + 1], state, noise)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(x).all()
