"""SDE solvers: measured strong orders, Ornstein-Uhlenbeck moments, reproducibility, torchsde.

Everything is float64 with fixed seeds. Time runs backwards, from t = 1 to t = 0, as in
sampling: dx = f(x, t) dt + g(t) dW with dt < 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchsde

from solvers.equation import Equation
from solvers.euler_maruyama import EulerMaruyama
from solvers.grids import QuadraticGrid, UniformGrid
from solvers.integrate import integrate
from solvers.noise import BrownianNoise, GeneratorNoise
from solvers.torchsde_backend import METHODS, TorchSDE

DT = torch.float64
SDE_SOLVERS = [EulerMaruyama()] + [TorchSDE(m) for m in METHODS]
IDS = ["EulerMaruyama"] + [f"torchsde-{m}" for m in METHODS]


# --- A linear SDE with additive noise and a known pathwise solution ------------------------
# dx = a(t) x dt + b(t) dW backwards from t=1 to t=0, a(t) = 1 + t, b(t) = e^t / 2. With
# Phi(t) = exp(t + t^2/2), d(x/Phi) = (b/Phi) dW, so along the path
#   x(0) = x(1) / Phi(1) + int_{t=1}^{0} psi(t) dW(t),   psi = b/Phi = exp(-t^2/2) / 2.
# Neither a nor b is even in t, so a backend that evaluates them at tau = -t instead of t
# converges to another SDE.
def _psi(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.exp(-0.5 * t**2)


def _dpsi(t: torch.Tensor) -> torch.Tensor:
    return -t * _psi(t)


LINEAR = Equation(drift=lambda x, t: (1 + t)[:, None] * x, diffusion=lambda t: 0.5 * torch.exp(t))


class LevyPath:
    """A fixed Brownian path that also gives each interval's space-time Levy area H.

    H = (1/h) int_a^b (W_s - W_a - (s-a)/h (W_b - W_a)) ds is what SRK needs to reach its
    order along one path; it does not depend on the direction of the query.
    """

    def __init__(self, like: torch.Tensor, seed: int) -> None:
        self._bm = torchsde.BrownianInterval(
            t0=0.0,
            t1=1.0,
            size=(like.shape[0], math.prod(like.shape[1:])),
            dtype=like.dtype,
            entropy=seed,
            tol=1e-12,
            levy_area_approximation="space-time",
        )
        self._gen = torch.Generator().manual_seed(seed + 1)

    def _query(self, t: torch.Tensor, t_next: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = float(t), float(t_next)
        w, u = self._bm(min(a, b), max(a, b), return_U=True)
        return (w if b >= a else -w), u / abs(b - a) - 0.5 * w  # U = h (W/2 + H)

    def increment(self, t, t_next, like):
        return self._query(t, t_next)[0].reshape(like.shape)

    def space_time_levy_area(self, t, t_next, like):
        return self._query(t, t_next)[1].reshape(like.shape)

    def normal(self, like):
        return torch.randn(like.shape, generator=self._gen, dtype=like.dtype)


def _exact(x1: torch.Tensor, noise, n_fine: int, levy: bool) -> torch.Tensor:
    """x(0) along the noise's path, the integral by a fine sum over [t_k, t_k+1], t decreasing.

    Without the Levy area, psi(t_mid) dW_k: error std ~ |psi'| h / sqrt(12) (measured mean
    |error| 1.3e-5 at h = 2^-12, against 2^-14). With it, psi(t_mid) dW_k + psi'(t_mid) h H_k:
    error O(h^2) (measured 1.4e-8 at h = 2^-10). Both are far below the smallest solver
    errors (1.4e-5 for SRK at h = 1/128 on the Levy path, ~4e-4 for the order-1 methods).
    """
    t = torch.linspace(1.0, 0.0, n_fine + 1, dtype=DT)
    total = x1 / math.exp(1.5)
    for k in range(n_fine):
        mid = 0.5 * (t[k] + t[k + 1])
        total = total + _psi(mid) * noise.increment(t[k], t[k + 1], x1)
        if levy:
            h = t[k] - t[k + 1]
            total = total + _dpsi(mid) * h * noise.space_time_levy_area(t[k], t[k + 1], x1)
    return total


STEPS = [8, 16, 32, 64, 128]
PATHS = {
    # (noise source, fine steps of the reference sum, whether the sum uses the Levy area)
    "BrownianNoise": (lambda x1: BrownianNoise(1.0, 0.0, x1, seed=1), 2**12, False),
    "LevyPath": (lambda x1: LevyPath(x1, seed=1), 2**10, True),
}


@pytest.fixture(scope="module")
def strong_errors() -> dict[tuple[str, str], list[float]]:
    """mean |x_N - x(0)| over 256 paths, for every (path, solver) and N in STEPS.

    Every solver and step count sees the same path. The coarse solves run before the fine
    reference sum: a BrownianInterval queried finely first would answer each coarse query
    by summing hundreds of small intervals (10x slower).
    """
    x1 = torch.randn(256, 1, generator=torch.Generator().manual_seed(0), dtype=DT)
    out = {}
    for path, (make, n_fine, levy) in PATHS.items():
        noise = make(x1)
        finals = {
            name: [
                integrate(s, LINEAR, x1, UniformGrid()(1.0, 0.0, n), noise=noise).x for n in STEPS
            ]
            for name, s in zip(IDS, SDE_SOLVERS, strict=True)
        }
        exact = _exact(x1, noise, n_fine, levy)
        for name, xs in finals.items():
            out[path, name] = [float((x - exact).abs().mean()) for x in xs]
    return out


# The slope each solver should show on LINEAR. Euler-Maruyama (ours and torchsde's), Milstein
# (= Euler, as dg/dx = 0) and reversible Heun have strong order 1 on additive noise. SRK is
# Roessler's SRA1, strong order 1.5 on additive noise; its h^1.5 error terms are multiples of
# g^2 d2f/dx2 (the Ito-Taylor terms I_(1,1,0) etc.), which vanish for a linear drift, leaving
# h^2: the measured slope is 2.0 (>= 1.5 as claimed). Without the Levy area, or with its
# sign wrong, SRK drops to slope 1.0 here.
EXPECTED = {name: 1.0 for name in IDS} | {"torchsde-srk": 2.0}


@pytest.mark.parametrize("solver, name", list(zip(SDE_SOLVERS, IDS, strict=True)), ids=IDS)
@pytest.mark.parametrize("path", list(PATHS))
def test_strong_order(solver, name, path, strong_errors):
    """Fit log mean|x_N - x(0)| against log h, h = 1/8 ... 1/128, one path for every h.

    256 sample paths, the same at every h, so the fit is smooth. Measured slopes: 1.00-1.04
    for the order-1 methods, 2.03 for SRK on the Levy path. Tolerance 0.15: well above the
    spread of the fit and well below the gap to the next lower order (0.5 or 1.0). SRK on
    BrownianNoise, which has no Levy area, gets H from an independent generator; that
    is exact in law but not along the path, so SRK shows order 1 there (asserted too).
    """
    errors = strong_errors[path, name]
    slope = np.polyfit(np.log([1.0 / n for n in STEPS]), np.log(errors), 1)[0]
    srk_without_area = name == "torchsde-srk" and path == "BrownianNoise"
    expected = 1.0 if srk_without_area else EXPECTED[name]
    assert abs(slope - expected) < 0.15, f"{name}: strong order {slope:.3f}, expected {expected}"
    assert errors[-1] < errors[0] / 8
    assert srk_without_area or slope > solver.order - 0.15  # at least the order claimed


# --- Ornstein-Uhlenbeck moments ------------------------------------------------------------
# Backwards from t=1 to 0, dx = THETA x dt + sigma dW is, in tau = 1 - t, the OU process
# dy = -THETA y dtau + sigma dB: from N(M0, V0), after time 1 the law is N(m, v) with
#   m = M0 e^-THETA,  v = V0 e^-2THETA + sigma^2 (1 - e^-2THETA) / (2 THETA).
THETA, SIGMA, M0, V0 = 1.0, 1.0, 2.0, 0.25
# 10000 rows x 3 independent coordinates: 30000 samples, and fewer elements than torch's
# intra-op grain (32768), so the elementwise ops stay single-threaded: fast on a busy machine.
N_OU = 30_000


def _ou_start(seed: int = 3) -> torch.Tensor:
    z = torch.randn(N_OU // 3, 3, generator=torch.Generator().manual_seed(seed), dtype=DT)
    return M0 + math.sqrt(V0) * z


def _em_ou_moments(grid: torch.Tensor, sigma) -> tuple[float, float]:
    """The exact mean and variance of Euler-Maruyama's iterates on the OU equation:
    m' = (1 + THETA dt) m,  v' = (1 + THETA dt)^2 v + sigma(t_k)^2 |dt|."""
    m, v = M0, V0
    for t, t_next in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        dt = t_next - t
        m, v = (1 + THETA * dt) * m, (1 + THETA * dt) ** 2 * v + sigma(t) ** 2 * abs(dt)
    return m, v


def _check_moments(x: torch.Tensor, m: float, v: float, slack_m=0.0, slack_v=0.0) -> None:
    """Sample mean and variance within 4 standard errors (+ a stated deterministic slack).

    SE(mean) = sqrt(v/n), SE(var) = v sqrt(2/(n-1)) for Gaussian samples: at n = 30000,
    v ~ 0.47 these are 0.0039 and 0.0038. A 4-SE miss has probability 6e-5 per check.
    """
    n = x.numel()
    se_m, se_v = math.sqrt(v / n), v * math.sqrt(2 / (n - 1))
    assert abs(float(x.mean()) - m) < 4 * se_m + slack_m, (float(x.mean()), m, se_m)
    assert abs(float(x.var()) - v) < 4 * se_v + slack_v, (float(x.var()), v, se_v)


@pytest.mark.parametrize("solver", SDE_SOLVERS, ids=IDS)
def test_ou_moments_closed_form(solver):
    """200 uniform steps from N(2, 0.25) match the OU law's closed-form mean and variance.

    Slack: Euler-Maruyama's own O(h) bias on this grid, computed exactly from its moment
    recursion (1.8e-3 in the mean, 1.3e-3 in the variance, < 0.5 SE); SRK and reversible
    Heun are second order in the drift here, so their bias is smaller still.
    """
    eq = Equation(drift=lambda x, t: THETA * x, diffusion=lambda t: torch.full_like(t, SIGMA))
    grid = UniformGrid()(1.0, 0.0, 200)
    sol = integrate(solver, eq, _ou_start(), grid, generator=torch.Generator().manual_seed(4))
    m = M0 * math.exp(-THETA)
    v = V0 * math.exp(-2 * THETA) + SIGMA**2 * (1 - math.exp(-2 * THETA)) / (2 * THETA)
    m_em, v_em = _em_ou_moments(grid, lambda t: SIGMA)
    _check_moments(sol.x, m, v, slack_m=abs(m_em - m), slack_v=abs(v_em - v))


@pytest.mark.parametrize("solver", [EulerMaruyama(), TorchSDE("euler")], ids=["EM", "torchsde"])
def test_em_ou_moments_exact_on_a_coarse_grid(solver):
    """8 quadratic-grid steps with sigma(t) = 1 + t: the iterates' exact discrete moments.

    Checks the increment variance |dt| and that g is taken at the left point t_k: taking it
    at t_k+1 would shift the variance by 0.19 (> 20 SE).
    """
    sigma = lambda t: 1.0 + t  # noqa: E731
    eq = Equation(drift=lambda x, t: THETA * x, diffusion=sigma)
    grid = QuadraticGrid()(1.0, 0.0, 8)
    sol = integrate(solver, eq, _ou_start(), grid, generator=torch.Generator().manual_seed(5))
    _check_moments(sol.x, *_em_ou_moments(grid, sigma))


def test_srk_ou_moments_exact_on_a_coarse_grid():
    """SRK (SRA1) is linear on the OU equation, so its iterates' moments are exact.

    In tau = -t the drift is F(y) = -THETA y and g = sigma. One SRA1 step of size h gives
    H0 = y + (3/4) F(y) h + (3/2) sigma U/h and y' = y + (F(y) + 2 F(H0)) h/3 + sigma dB, i.e.
    y' = a y + sigma (1 - THETA h/2) dB - THETA sigma h H,  a = 1 - THETA h + (THETA h)^2/2,
    with U = h (dB/2 + H), dB ~ N(0, h) and H ~ N(0, h/12) independent. So
    m' = a m,   v' = a^2 v + sigma^2 (1 - THETA h/2)^2 h + THETA^2 sigma^2 h^3/12.
    With THETA = 4 on 4 quadratic steps the Levy-area term is 0.018 of v = 0.126 (SE 1e-3):
    drawing H with the wrong variance (h/3, or 0) moves the variance by > 10 SE.
    """
    theta, sigma = 4.0, 1.0
    eq = Equation(drift=lambda x, t: theta * x, diffusion=lambda t: torch.full_like(t, sigma))
    grid = QuadraticGrid()(1.0, 0.0, 4)
    sol = integrate(
        TorchSDE("srk"), eq, _ou_start(), grid, generator=torch.Generator().manual_seed(6)
    )
    m, v = M0, V0
    for h in (grid[:-1] - grid[1:]).tolist():
        a = 1 - theta * h + (theta * h) ** 2 / 2
        v = a**2 * v + sigma**2 * ((1 - theta * h / 2) ** 2 * h + theta**2 * h**3 / 12)
        m = a * m
    _check_moments(sol.x, m, v)


# --- Reproducibility ------------------------------------------------------------------------
NONLINEAR = Equation(
    drift=lambda x, t: (1 + t).reshape(-1, *[1] * (x.ndim - 1)) * x + torch.sin(2 * x),
    diffusion=lambda t: 0.5 * torch.exp(t),
)


def _run(solver, seed: int, x: torch.Tensor, steps: int = 12, **kw):
    grid = QuadraticGrid()(1.0, 0.0, steps)
    return integrate(
        solver, NONLINEAR, x, grid, generator=torch.Generator().manual_seed(seed), **kw
    )


@pytest.mark.parametrize("solver", SDE_SOLVERS, ids=IDS)
def test_same_seed_same_samples_other_seed_differs(solver):
    x = torch.randn(16, 3, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    a, b, c = _run(solver, 7, x), _run(solver, 7, x), _run(solver, 8, x)
    assert torch.equal(a.x, b.x)
    assert torch.isfinite(a.x).all()
    # other noise moves every entry: the two runs differ by O(1) (noise std ~1 over [0, 1]),
    # so an entry within 1e-6 has probability ~1e-6
    assert ((a.x - c.x).abs() > 1e-6).all()


# --- The torchsde adapter -------------------------------------------------------------------
def test_torchsde_euler_is_euler_maruyama_on_any_grid_and_rank():
    """Same generator, 4-D state, non-uniform grid: torchsde's Euler after the time flip and
    the flattening is our Euler-Maruyama to the last bit (-a*b == a*-b exactly in IEEE)."""
    x = torch.randn(5, 2, 3, 3, generator=torch.Generator().manual_seed(1), dtype=DT)
    a = _run(EulerMaruyama(), 9, x, save_at="grid")
    b = _run(TorchSDE("euler"), 9, x, save_at="grid")
    assert torch.equal(a.x, b.x) and torch.equal(a.trajectory, b.trajectory)
    assert torch.equal(_run(TorchSDE("milstein"), 9, x).x, a.x)  # g dg/dx = 0: Milstein = Euler


class RecordingNoise(GeneratorNoise):
    """Generator noise that records the intervals it is asked about."""

    def __init__(self) -> None:
        super().__init__(torch.Generator().manual_seed(0))
        self.intervals, self.normals = [], 0

    def increment(self, t, t_next, like):
        self.intervals.append((float(t), float(t_next)))
        return GeneratorNoise.normal(self, like) * (t_next - t).abs().sqrt()

    def normal(self, like):
        self.normals += 1
        return super().normal(like)


@pytest.mark.parametrize("method", METHODS)
def test_torchsde_steps_on_the_drivers_grid_with_the_drivers_noise(method):
    """Each step asks the driver's noise source for W(t_k+1) - W(t_k) on exactly the grid's
    intervals, in the grid's (decreasing) time: the flip stays inside the adapter. SRK also
    draws one normal per step for the space-time Levy area."""
    x = torch.randn(4, 3, dtype=DT)
    grid = QuadraticGrid()(1.0, 0.1, 7)
    noise = RecordingNoise()
    integrate(TorchSDE(method), NONLINEAR, x, grid, noise=noise)
    assert noise.intervals == list(zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True))
    assert noise.normals == (7 if method == "srk" else 0)


@pytest.mark.parametrize(
    "method, per_step, extra",
    [("euler", 1, 0), ("milstein", 1, 0), ("srk", 3, 0), ("reversible_heun", 1, 1)],
)
def test_torchsde_nfe(method, per_step, extra):
    """Drift evaluations counted by the driver: torchsde's SRA1 evaluates its first stage
    twice (3 per step, not 2); reversible Heun evaluates once more at the start."""
    calls = []

    def drift(x, t):
        calls.append(1)
        return -x

    eq = Equation(drift=drift, diffusion=lambda t: torch.ones_like(t))
    sol = integrate(TorchSDE(method), eq, torch.zeros(3, 2), UniformGrid()(1.0, 0.0, 10))
    assert sol.nfe == len(calls) == per_step * 10 + extra
    assert sol.steps == 10


def test_torchsde_declares_and_refuses():
    assert TorchSDE.order == 1.0 and TorchSDE("srk").order == 1.5
    assert TorchSDE().stochastic and TorchSDE().equation == "sde" and not TorchSDE().adaptive
    with pytest.raises(ValueError, match="euler, milstein, srk, reversible_heun"):
        TorchSDE("heun")
    ode = Equation(drift=lambda x, t: -x)
    with pytest.raises(ValueError, match="reverse-time SDE"):
        integrate(TorchSDE("srk"), ode, torch.zeros(2, 1), UniformGrid()(1.0, 0.0, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", METHODS)
def test_torchsde_steps_make_no_host_sync_on_cuda(method):
    dev = torch.device("cuda")
    eq = Equation(drift=lambda x, t: -x * t.reshape(-1, 1), diffusion=lambda t: 1 + t)
    x = torch.randn(64, 8, device=dev)
    grid = UniformGrid()(1.0, 0.0, 8).to(device=dev, dtype=x.dtype)
    noise = GeneratorNoise(torch.Generator(device=dev).manual_seed(0))
    solver = TorchSDE(method)
    state = solver.init(eq, x, grid)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(8):
            x, state = solver.step(eq, x, grid[i], grid[i + 1], state, noise)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(x).all()
