"""Probability-flow ODE solvers: Euler, Heun, RK4 (fixed step), Dopri5 and ScipyODE (adaptive).

Numerical checks run in float64 on problems with closed-form solutions:

- a linear ODE dx/dt = a(t) x + b(t) on a rank-3 state, whose solution is known exactly;
- the probability-flow ODE of a VP-type SDE for Gaussian data, which maps the quantile z of
  x_T to the same quantile of p_eps, sample by sample.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from solvers._utils import append_dims
from solvers.dopri5 import Dopri5
from solvers.equation import Equation, EvalCounter
from solvers.explicit_rk import RK4, ButcherTableau, Euler, ExplicitRK, Heun
from solvers.grids import UniformGrid
from solvers.integrate import NonFiniteStateError, integrate
from solvers.scipy_ode import ScipyODE

F64 = torch.float64
T1, T0 = 1.0, 0.1  # the linear ODE runs backwards from T1 to T0

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=cuda)]


def linear_problem(device="cpu"):
    """dx/dt = a(t) x + b(t), a(t) = -lam (1 + t), b = p' - a p with p(t) = sin(2t) w.

    Per element (lam and w have shape (2, 2)), with A(t) = -lam (t + t^2/2):
    x(t) = exp(A(t) - A(T1)) (x(T1) - p(T1)) + p(t).
    """
    lam = torch.tensor([[0.2, 0.5], [1.0, -0.5]], dtype=F64, device=device)
    w = torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=F64, device=device)

    def p(t):
        return torch.sin(2 * t) * w

    def drift(x, t):
        t = append_dims(t, x.ndim).to(F64)
        a = -lam * (1 + t)
        return (a * x.to(F64) + 2 * torch.cos(2 * t) * w - a * p(t)).to(x.dtype)

    def exact(x1, t):  # the solution through x1 at T1, evaluated at t
        big_a = lambda s: -lam * (s + s**2 / 2)  # noqa: E731
        t1, t = (torch.tensor(v, dtype=F64, device=device) for v in (T1, t))
        return torch.exp(big_a(t) - big_a(t1)) * (x1 - p(t1)) + p(t)

    x1 = torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(0), dtype=F64).to(device)
    return Equation(drift), x1, exact(x1, T0)


# A VP-type SDE written inline: beta(t) = 0.1 + 19.9 t, alpha(t) = exp(-int_0^t beta / 2),
# sigma^2 = 1 - alpha^2. Data N(m, s^2) per coordinate; p_t = N(alpha m, alpha^2 s^2 + sigma^2).
B0, B1, T_MAX, EPS = 0.1, 20.0, 1.0, 1e-3
M = torch.tensor([1.5, -2.0], dtype=F64)
S = torch.tensor([0.5, 0.05], dtype=F64)


def _alpha(t):
    return torch.exp(-(t**2) * (B1 - B0) / 4 - t * B0 / 2)


def _var(t):
    a = _alpha(t)
    return a**2 * S**2 + 1 - a**2


def vp_problem():
    """PF ODE dx/dt = f - g^2/2 score = -beta/2 (x + score), with the exact Gaussian score.

    It transports x_T = alpha_T m + sqrt(v_T) z to alpha_eps m + sqrt(v_eps) z for every z.
    """

    def drift(x, t):
        t = append_dims(t, x.ndim)
        beta = B0 + t * (B1 - B0)
        score = -(x - _alpha(t) * M) / _var(t)
        return -0.5 * beta * (x + score)

    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    t_max, eps = torch.tensor(T_MAX, dtype=F64), torch.tensor(EPS, dtype=F64)
    x_t = _alpha(t_max) * M + _var(t_max).sqrt() * z
    x_eps = _alpha(eps) * M + _var(eps).sqrt() * z
    return Equation(drift), x_t, x_eps


def ends(t_start=T1, t_end=T0):
    return torch.tensor([t_start, t_end], dtype=F64)


def max_err(a, b):
    return (a - b).abs().max().item()


# --- fixed-step explicit Runge–Kutta -------------------------------------------------------


@pytest.mark.parametrize(
    "solver, steps",
    [
        (Euler(), [20, 40, 80, 160, 320]),
        (Heun(), [10, 20, 40, 80, 160]),
        (RK4(), [5, 10, 20, 40, 80]),
    ],
)
def test_explicit_rk_convergence_order(solver, steps):
    """The log-log slope of the global error against h matches the declared order.

    Measured: Euler 0.98, Heun 1.97, RK4 3.93. The fitted slope differs from the order by the
    higher-order terms of the error expansion, which shrink like h; on these step counts they
    move the slope by < 0.1, so +-0.2 is a safe margin that a wrong coefficient (which drops
    the order by one) still fails. The smallest RK4 error, 1.5e-8, is far above roundoff.
    """
    eq, x1, x0 = linear_problem()
    errs = []
    for n in steps:
        sol = integrate(solver, eq, x1, UniformGrid()(T1, T0, n))
        assert sol.nfe == solver.tableau.stages * n  # one drift evaluation per stage
        errs.append(max_err(sol.x, x0))
    slope = np.polyfit(np.log((T1 - T0) / np.array(steps)), np.log(errs), 1)[0]
    assert abs(slope - solver.order) < 0.2, (type(solver).__name__, slope, errs)


@pytest.mark.parametrize(
    "solver, tol",
    [(RK4(), 1e-8), (Dopri5(rtol=1e-8, atol=1e-8), 1e-6), (ScipyODE(rtol=1e-8, atol=1e-8), 1e-6)],
)
def test_forward_in_time(solver, tol):
    """Time may also run forwards (T0 -> T1): RK4 with 100 steps errs 1.6e-9; Dopri5 and
    scipy at rtol = atol = 1e-8 err 3.6e-8 (measured): the solution grows forwards, so the
    local tolerance accumulates to a few times 1e-8; the bound is 1e-6."""
    eq, x1, x0 = linear_problem()
    grid = UniformGrid()(T1, T0, 100).flip(0) if not solver.adaptive else ends(T0, T1)
    assert max_err(integrate(solver, eq, x0, grid).x, x1) < tol


def test_tableaux_and_declarations():
    assert (Euler.order, Heun.order, RK4.order, Dopri5.order) == (1, 2, 4, 5)
    assert [ScipyODE(method=m).order for m in ("RK45", "RK23", "DOP853", "LSODA")] == [5, 3, 8, 1]
    assert ScipyODE.order == 5  # the default method's order, read from the class
    for cls in (Euler, Heun, RK4, Dopri5, ScipyODE):
        assert cls.stochastic is False and cls.equation == "ode"
        assert cls.adaptive is (cls in (Dopri5, ScipyODE))
    with pytest.raises(TypeError, match="Butcher tableau"):
        ExplicitRK()
    with pytest.raises(ValueError, match="sum to c"):
        ButcherTableau(a=((), (0.3,)), b=(0.5, 0.5), c=(0.0, 1.0))
    with pytest.raises(ValueError, match="sum to 1"):
        ButcherTableau(a=((),), b=(0.9,), c=(0.0,))
    sde = Equation(lambda x, t: x, diffusion=lambda t: torch.ones_like(t))
    for solver in (RK4(), Dopri5(), ScipyODE()):
        with pytest.raises(ValueError, match="integrates an ODE"):
            integrate(solver, sde, torch.zeros(2, 1), ends())


# --- adaptive: Dopri5 and the scipy backend ------------------------------------------------

TOLS = [1e-4, 1e-6, 1e-8, 1e-10]


@pytest.mark.parametrize("make", [Dopri5, ScipyODE], ids=["Dopri5", "ScipyODE"])
def test_adaptive_error_follows_tolerance(make):
    """With rtol = atol = tol the global error shrinks with tol and stays below 30 tol.

    Measured (both solvers alike): 1.2e-4, 4.4e-6, 7.4e-8, 9.4e-10, i.e. 1-9x the tolerance
    (a local tolerance accumulates over the steps, here 3-30 of them). Each 100x tighter
    tolerance must cut the error at least 10x (measured 27-79x).
    """
    eq, x1, x0 = linear_problem()
    errs = [max_err(integrate(make(rtol=tol, atol=tol), eq, x1, ends()).x, x0) for tol in TOLS]
    for tol, err in zip(TOLS, errs, strict=True):
        assert err < 30 * tol, (tol, err)
    assert all(a > 10 * b for a, b in zip(errs, errs[1:], strict=False)), errs


@pytest.mark.parametrize("tol", [1e-5, 1e-8])
@pytest.mark.parametrize("problem", ["linear", "vp"])
def test_dopri5_nfe_matches_scipy_rk45(problem, tol):
    """At equal tolerances Dopri5 costs about what scipy's RK45 costs.

    Both use the same pair, norm, initial-step rule and controller, so the counts coincide
    (measured: linear 32/80 at 1e-5/1e-8 for both; VP PF ODE 104 (10 steps, 7 rejected) and 302
    (31 steps, 19 rejected) for both). A 25% margin leaves room for changes in scipy. Also
    checks Dopri5's bookkeeping: 2 evaluations at the start, then 6 per attempted step (FSAL).
    """
    eq, x, _ = linear_problem() if problem == "linear" else vp_problem()
    grid = ends() if problem == "linear" else ends(T_MAX, EPS)
    ours = integrate(Dopri5(rtol=tol, atol=tol), eq, x, grid)
    ref = integrate(ScipyODE(rtol=tol, atol=tol), eq, x, grid)
    print(f"{problem} tol={tol:g}: Dopri5 nfe={ours.nfe}, scipy RK45 nfe={ref.nfe}")
    assert ours.nfe == 2 + 6 * (ours.steps + ours.rejected)
    assert 0.8 <= ours.nfe / ref.nfe <= 1.25
    assert 0.8 <= ours.steps / ref.steps <= 1.25


def test_dopri5_agrees_with_scipy():
    """At rtol = atol = 1e-10, Dopri5 matches scipy's RK45 to 1e-12 (same algorithm: measured
    ~4e-15) and the independent DOP853 to 1e-8 (measured 8.7e-10, both ~1e-9 from exact)."""
    eq, x1, _ = linear_problem()
    ours = integrate(Dopri5(rtol=1e-10, atol=1e-10), eq, x1, ends()).x
    rk45 = integrate(ScipyODE("RK45", rtol=1e-10, atol=1e-10), eq, x1, ends()).x
    dop853 = integrate(ScipyODE("DOP853", rtol=1e-10, atol=1e-10), eq, x1, ends()).x
    assert max_err(ours, rk45) < 1e-12
    assert max_err(ours, dop853) < 1e-8


@pytest.mark.parametrize("method", ["RK45", "RK23", "DOP853", "LSODA"])
def test_scipy_stats(method):
    """scipy's nfev equals the drift calls counted on our side; step counts are sane."""
    eq, x, x_eps = vp_problem()
    counter = EvalCounter()
    solver = ScipyODE(method=method, rtol=1e-6, atol=1e-6)
    out, stats = solver.solve(eq.counted(counter), x, T_MAX, EPS, None)
    assert stats["nfev"] == counter.n
    assert stats["steps"] > 0 and stats["rejected"] >= 0
    assert max_err(out, x_eps) < 1e-4  # measured 3.7e-6 (DOP853) to 1.8e-5 (RK45)


def test_dopri5_first_step_and_zero_span():
    """A given first step skips the initial-step evaluation; an empty span does nothing."""
    eq, x1, x0 = linear_problem()
    sol = integrate(Dopri5(rtol=1e-8, atol=1e-8, first_step=1e-3), eq, x1, ends())
    assert sol.nfe == 1 + 6 * (sol.steps + sol.rejected)
    assert max_err(sol.x, x0) < 1e-6
    out, stats = Dopri5().solve(eq, x1, 0.5, 0.5, None)
    assert out is x1 and stats == {"steps": 0, "rejected": 0}


def test_adaptive_failures():
    x = torch.ones(2, 3, dtype=F64)
    with pytest.raises(RuntimeError, match="max_steps=5"):
        integrate(Dopri5(rtol=1e-9, atol=1e-9, max_steps=5), Equation(lambda x, t: -x), x, ends())
    # dx/dt = -x^2 with x(1) = 1 is x = 1/t, which blows up at t = 0.
    blowup = Equation(lambda x, t: -(x**2))
    with pytest.raises(RuntimeError, match="underflow"):
        integrate(Dopri5(), blowup, x, ends(1.0, -0.5))
    with pytest.raises(RuntimeError, match="scipy RK45 failed"):
        integrate(ScipyODE(), blowup, x, ends(1.0, -0.5))
    # The drift turns NaN below t = 0.5: a NonFiniteStateError (a FloatingPointError).
    nan = Equation(lambda x, t: torch.where(t[:, None] < 0.5, torch.nan, -x))
    for solver in (Dopri5(), ScipyODE()):
        with pytest.raises(NonFiniteStateError, match="NaN"):
            integrate(solver, nan, x, ends(1.0, 0.0))
    with pytest.raises(NonFiniteStateError, match="t=1"):
        integrate(Dopri5(), Equation(lambda x, t: -x), x * torch.nan, ends(1.0, 0.0))


# --- dtype, device, host synchronisation ---------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "solver", [Euler(), Heun(), RK4(), Dopri5(), ScipyODE(), ScipyODE("LSODA")], ids=repr
)
def test_float32_stays_float32_on_device(solver, device):
    """float32 in, float32 out, on the input's device; accurate to float32 level
    (measured: Dopri5 2.6e-5, RK45 2.9e-5, LSODA 4.9e-5 at tol 1e-5; 100 steps of Euler 6.7e-2,
    Heun 5.5e-4, RK4 float32 roundoff ~1e-6)."""
    eq, x1, x0 = linear_problem(device)
    grid = ends() if solver.adaptive else UniformGrid()(T1, T0, 100)
    out = integrate(solver, eq, x1.float(), grid).x
    assert out.dtype == torch.float32 and out.device == x1.device
    assert max_err(out.double(), x0) < (1e-1 if isinstance(solver, Euler) else 1e-3)


@cuda
@pytest.mark.parametrize("solver, tol", [(Euler(), 1e-1), (Heun(), 1e-3), (RK4(), 1e-7)], ids=repr)
def test_fixed_step_rk_makes_no_host_sync(solver, tol):
    """The step loop runs under sync-debug mode "error": any host synchronisation raises.

    Errors after 100 float64 steps (measured on CPU): Euler 6.7e-2, Heun 5.5e-4, RK4 6.3e-9.
    """
    eq, x1, x0 = linear_problem("cuda")
    grid = UniformGrid()(T1, T0, 100).to("cuda")
    x, state = x1, solver.init(eq, x1, grid)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(100):
            x, state = solver.step(eq, x, grid[i], grid[i + 1], state, None)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert max_err(x, x0) < tol


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: Dopri5(rtol=0.0), "rtol"),
        (lambda: Dopri5(rtol=-1e-3), "rtol"),
        (lambda: Dopri5(atol=0.0), "atol"),
        (lambda: Dopri5(atol=float("nan")), "atol"),
        (lambda: Dopri5(first_step=0.0), "first_step"),
        (lambda: Dopri5(first_step=float("inf")), "first_step"),
        (lambda: Dopri5(max_steps=0), "max_steps"),
        (lambda: Dopri5(max_steps=2.5), "max_steps"),
        (lambda: Dopri5(safety=1.5), "safety"),
        (lambda: Dopri5(min_factor=1.0), "min_factor"),
        (lambda: Dopri5(max_factor=1.0), "max_factor"),
        (lambda: ScipyODE(method="Euler"), "method"),
        (lambda: ScipyODE(method="BDF"), "method"),
        (lambda: ScipyODE(rtol=0.0), "rtol"),
        (lambda: ScipyODE(atol=-1.0), "atol"),
    ],
)
def test_validation(make, name):
    with pytest.raises(ValueError, match=name):
        make()


# --- end to end: the probability-flow ODE of Gaussian data ---------------------------------


@pytest.mark.parametrize(
    "solver, steps, tol",
    [
        (Euler(), 2000, 2e-3),
        (Heun(), 400, 1e-3),
        (RK4(), 200, 3e-7),
        (Dopri5(rtol=1e-8, atol=1e-8), None, 1e-6),
        (ScipyODE("RK45", rtol=1e-8, atol=1e-8), None, 1e-6),
        (ScipyODE("DOP853", rtol=1e-8, atol=1e-8), None, 1e-6),
        (ScipyODE("RK23", rtol=1e-8, atol=1e-8), None, 1e-6),
        (ScipyODE("LSODA", rtol=1e-8, atol=1e-8), None, 1e-6),
    ],
    ids=repr,
)
def test_pf_ode_maps_gaussian_quantiles(solver, steps, tol):
    """x_T = alpha_T m + sqrt(v_T) z must land on alpha_eps m + sqrt(v_eps) z, per sample.

    A pathwise check of the whole PF ODE: a wrong sign or factor in the drift, or a solver
    that is only right in distribution, fails it. Max errors measured over 16 samples: Euler
    2000 steps 8.9e-4, Heun 400 steps 4.5e-4, RK4 200 steps 7.5e-8 (uniform grid from T=1 to
    eps=1e-3); at rtol = atol = 1e-8 Dopri5 and RK45 2.9e-8, RK23 5.8e-8, LSODA 3.4e-8,
    DOP853 1.0e-7 (NFE 302, 302, 1283, 183, 230). Bounds: about 2-10x the measurement.
    """
    eq, x_t, x_eps = vp_problem()
    grid = ends(T_MAX, EPS) if steps is None else UniformGrid()(T_MAX, EPS, steps)
    assert max_err(integrate(solver, eq, x_t, grid).x, x_eps) < tol
