"""The driver and the grids: layering, NFE counting, finiteness checks, saving, refusals."""

from __future__ import annotations

import ast
import math
import pathlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch

import solvers
from solvers._utils import batch_time
from solvers.base import Solver
from solvers.equation import Equation
from solvers.euler_maruyama import EulerMaruyama
from solvers.grids import KarrasGrid, LogSNRGrid, QuadraticGrid, UniformGrid
from solvers.integrate import NonFiniteStateError, integrate
from solvers.noise import GeneratorNoise

DT = torch.float64
SOLVERS_DIR = pathlib.Path(solvers.__file__).parent
# The layers above `solvers` (meaning, then wiring): none of them may be imported by it.
UPPER_LAYERS = ("sde_diffusion", "hydra", "omegaconf")


# --- solvers is an independent layer --------------------------------------------------------
def test_importing_every_solvers_module_loads_no_upper_layer():
    """In a fresh interpreter, import `solvers` and each of its modules, then look at sys.modules."""
    code = (
        "import importlib, pkgutil, sys, solvers\n"
        "for m in pkgutil.iter_modules(solvers.__path__):\n"
        "    importlib.import_module('solvers.' + m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {UPPER_LAYERS!r})\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_no_solvers_source_imports_an_upper_layer():
    """Also lazy imports inside functions, which an import-time check cannot see."""
    offenders = []
    for path in sorted(SOLVERS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in UPPER_LAYERS]
    assert offenders == []


# --- small test solvers and equations -------------------------------------------------------
@dataclass(frozen=True)
class OdeEuler(Solver):
    """x_{n+1} = x_n + f(x_n, t_n) dt: a deterministic ODE solver for driver tests."""

    equation: ClassVar[str] = "ode"

    def step(self, equation, x, t, t_next, state, noise) -> tuple[torch.Tensor, Any]:
        return x + equation.drift(x, batch_time(t, x)) * (t_next - t), state


@dataclass(frozen=True)
class DriftAndScore(Solver):
    """Calls the drift once and the score twice per step, to test NFE counting."""

    equation: ClassVar[str] = "ode"
    requires: ClassVar[tuple[str, ...]] = ("score",)

    def step(self, equation, x, t, t_next, state, noise) -> tuple[torch.Tensor, Any]:
        tb = batch_time(t, x)
        s = equation.score(x, tb) + equation.score(x, tb)
        return x + (equation.drift(x, tb) + s) * (t_next - t), state


class Counted:
    """Our own call counter, independent of the driver's."""

    def __init__(self, fn) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def _linear_ode() -> Equation:
    return Equation(drift=lambda x, t: x)


# --- NFE ---------------------------------------------------------------------------------------
def test_nfe_counts_every_drift_call_of_an_sde_solver():
    drift = Counted(lambda x, t: -x)
    eq = Equation(drift=drift, diffusion=lambda t: torch.ones_like(t))
    sol = integrate(EulerMaruyama(), eq, torch.zeros(4, 2), UniformGrid()(1.0, 0.0, 17))
    assert sol.nfe == drift.calls == 17 and sol.steps == 17


def test_nfe_counts_drift_and_score_calls():
    drift, score = Counted(lambda x, t: -x), Counted(lambda x, t: -0.1 * x)
    eq = Equation(drift=drift, score=score)
    sol = integrate(DriftAndScore(), eq, torch.ones(3, 1), UniformGrid()(1.0, 0.0, 5))
    assert sol.nfe == drift.calls + score.calls == 15


def test_callback_sees_every_step():
    seen = []
    cb = lambda i, t, x: seen.append((i, float(t), x.clone()))  # noqa: E731
    grid = UniformGrid()(1.0, 0.0, 4)
    sol = integrate(OdeEuler(), _linear_ode(), torch.ones(2, 1, dtype=DT), grid, callback=cb)
    assert [s[:2] for s in seen] == [(i, float(grid[i + 1])) for i in range(4)]
    assert torch.equal(seen[-1][2], sol.x)


# --- Finiteness -----------------------------------------------------------------------------
def _nan_below(t_bad: float) -> Equation:
    def drift(x, t):
        return x * torch.where(t < t_bad, math.nan, 1.0).reshape(-1, 1)

    return Equation(drift=drift)


def test_non_finite_state_names_the_step_and_time():
    """The drift turns NaN for t < 0.45: step 6 (t = 0.4 -> 0.3) is the first bad one."""
    grid = UniformGrid()(1.0, 0.0, 10)
    with pytest.raises(NonFiniteStateError, match=r"step 6 of 10, from t=0\.4 to t=0\.3"):
        integrate(OdeEuler(), _nan_below(0.45), torch.ones(2, 1, dtype=DT), grid)


def test_check_finite_false_integrates_anyway():
    grid = UniformGrid()(1.0, 0.0, 10)
    x = torch.ones(2, 1, dtype=DT)
    sol = integrate(OdeEuler(), _nan_below(0.45), x, grid, check_finite=False)
    assert torch.isnan(sol.x).all() and sol.steps == 10


# --- Saving -----------------------------------------------------------------------------------
def test_save_at_grid_keeps_every_state():
    x0 = torch.randn(3, 2, 2, dtype=DT)
    grid = QuadraticGrid()(1.0, 0.0, 6)
    sol = integrate(OdeEuler(), _linear_ode(), x0, grid, save_at="grid")
    assert torch.equal(sol.times, grid) and sol.trajectory.shape == (7, 3, 2, 2)
    assert torch.equal(sol.trajectory[0], x0) and torch.equal(sol.trajectory[-1], sol.x)
    assert sol.steps == 6


def test_save_at_times_inserts_them_and_saves_there():
    """Times between grid points are inserted: the state saved at 0.55 is the one obtained by
    integrating on the grid cut at 0.55 (same operations, so bit-equal)."""
    x0 = torch.randn(3, 2, dtype=DT)
    grid = UniformGrid()(1.0, 0.0, 10)
    sol = integrate(OdeEuler(), _linear_ode(), x0, grid, save_at=[0.55, 0.25])
    assert sol.times.tolist() == [0.55, 0.25] and sol.trajectory.shape == (2, 3, 2)
    assert sol.steps == 12
    head = torch.cat([grid[:5], torch.tensor([0.55], dtype=DT)])
    assert torch.equal(sol.trajectory[0], integrate(OdeEuler(), _linear_ode(), x0, head).x)


def test_save_at_outside_the_grid_is_refused():
    with pytest.raises(ValueError, match="within the grid"):
        integrate(
            OdeEuler(), _linear_ode(), torch.ones(1, 1), UniformGrid()(1.0, 0.1, 3), save_at=[0.0]
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_save_at_a_grid_time_adds_no_step(dtype):
    sol = integrate(
        OdeEuler(),
        _linear_ode(),
        torch.ones(2, 1, dtype=dtype),
        UniformGrid()(1.0, 0.0, 10),
        save_at=[0.3],
    )
    assert sol.steps == 10 and sol.nfe == 10


# --- Refusals ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "grid",
    [[1.0, 0.5, 0.7, 0.0], [1.0, 0.5, 0.5, 0.0], [1.0], [[1.0, 0.5], [0.5, 0.0]], [1.0, math.nan]],
    ids=["non-monotone", "repeated", "one-time", "2-D", "nan"],
)
def test_bad_grids_are_refused(grid):
    with pytest.raises(ValueError, match="grid"):
        integrate(OdeEuler(), _linear_ode(), torch.ones(2, 1), torch.tensor(grid))


def test_sde_solver_refuses_an_ode_and_ode_solver_refuses_an_sde():
    drift = Counted(lambda x, t: -x)
    grid = UniformGrid()(1.0, 0.0, 3)
    with pytest.raises(ValueError, match="EulerMaruyama integrates a reverse-time SDE.*ODE"):
        integrate(EulerMaruyama(), Equation(drift=drift), torch.ones(2, 1), grid)
    sde = Equation(drift=drift, diffusion=lambda t: torch.ones_like(t))
    with pytest.raises(ValueError, match="OdeEuler integrates an ODE.*probability-flow ODE"):
        integrate(OdeEuler(), sde, torch.ones(2, 1), grid)
    with pytest.raises(ValueError, match="needs the equation's score"):
        integrate(DriftAndScore(), Equation(drift=drift), torch.ones(2, 1), grid)
    assert drift.calls == 0  # refused before any step


# --- Grids ------------------------------------------------------------------------------------
B0, B1 = 0.1, 20.0  # a VP-like schedule: alpha(t) = exp(-t^2 (B1 - B0)/4 - t B0/2)


def vp_noise_level(t: torch.Tensor) -> torch.Tensor:
    """sigma/alpha = sqrt(1/alpha^2 - 1) for the VP SDE."""
    return torch.expm1(0.5 * t**2 * (B1 - B0) + t * B0).sqrt()


ALL_GRIDS = [UniformGrid(), QuadraticGrid(), KarrasGrid(7.0), KarrasGrid(1.5), LogSNRGrid()]


@pytest.mark.parametrize("grid", ALL_GRIDS, ids=repr)
@pytest.mark.parametrize("steps", [1, 2, 37])
def test_grids_decrease_strictly_with_exact_end_points(grid, steps):
    t = grid(1.0, 1e-3, steps, noise_level=vp_noise_level)
    assert t.dtype == DT and t.shape == (steps + 1,)
    assert t[0].item() == 1.0 and t[-1].item() == 1e-3
    assert bool((t[1:] < t[:-1]).all())


def test_uniform_and_quadratic_grids():
    u = torch.linspace(0, 1, 9, dtype=DT)
    torch.testing.assert_close(UniformGrid()(1.0, 0.2, 8), 1.0 - 0.8 * u)
    # the official DPM-Solver time_quadratic: uniform in sqrt(t)
    want = (1.0 + u * (0.2**0.5 - 1.0)) ** 2
    torch.testing.assert_close(QuadraticGrid()(1.0, 0.2, 8), want)


@pytest.mark.parametrize("rho", [7.0, 3.0, 1.0])
def test_karras_grid_is_uniform_in_noise_level_to_the_one_over_rho(rho):
    """noise_level(t_i)^(1/rho) are equally spaced (Karras et al. 2022, Eq. 5). The grid
    inverts noise_level by 100 bisections in float64, exact to rounding: rtol 1e-9."""
    t = KarrasGrid(rho)(1.0, 1e-3, 20, noise_level=vp_noise_level)
    s = vp_noise_level(t) ** (1 / rho)
    d = s[1:] - s[:-1]
    torch.testing.assert_close(d, torch.full_like(d, float(d.mean())), rtol=1e-9, atol=0)


def test_log_snr_grid_is_uniform_in_log_noise_level():
    t = LogSNRGrid()(1.0, 1e-3, 20, noise_level=vp_noise_level)
    d = vp_noise_level(t).log().diff()
    torch.testing.assert_close(d, torch.full_like(d, float(d.mean())), rtol=1e-9, atol=0)


@pytest.mark.parametrize("grid", ALL_GRIDS, ids=repr)
@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_grids_refuse_bad_steps(grid, steps):
    with pytest.raises(ValueError, match="steps"):
        grid(1.0, 1e-3, steps, noise_level=vp_noise_level)


def test_grids_refuse_bad_arguments():
    with pytest.raises(ValueError, match="rho"):
        KarrasGrid(0.0)
    for grid in (KarrasGrid(), LogSNRGrid()):
        with pytest.raises(ValueError, match="noise_level"):
            grid(1.0, 1e-3, 10)
    with pytest.raises(ValueError, match="t_start"):
        UniformGrid()(0.1, 1.0, 10)


# --- No host synchronisation on CUDA ----------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_euler_maruyama_steps_make_no_host_sync_on_cuda():
    dev = torch.device("cuda")
    eq = Equation(drift=lambda x, t: -x * t.reshape(-1, 1, 1, 1), diffusion=lambda t: 1 + t)
    x = torch.randn(8, 3, 4, 4, device=dev)
    grid = KarrasGrid()(1.0, 1e-3, 10, noise_level=vp_noise_level).to(dev, x.dtype)
    noise = GeneratorNoise(torch.Generator(device=dev).manual_seed(0))
    solver, state = EulerMaruyama(), None
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(10):
            x, state = solver.step(eq, x, grid[i], grid[i + 1], state, noise)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(x).all()
