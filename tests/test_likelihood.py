"""Log-likelihoods through the probability-flow ODE, trace estimators and bits/dim.

The known answer: for a Gaussian mixture p_0 the marginal p_eps is a mixture in closed form
(``mixture.marginal_log_prob``). The ODE maps p_eps onto p_T exactly, but log_likelihood
scores x_T under the prior pi, not p_T, so

    logp - log p_eps(x) = [ODE error] + [log pi(x_T) - log p_T(x_T)],

and the second term (the prior mismatch) is evaluated exactly here from the returned latent.
To first order its size is alpha(T) |z . m| for VP/subVP (m = E[x_0], |m| = 0.43 here;
alpha(T) = exp(-5.025) = 6.6e-3) and |z . m| / sigma(T)^2 for VE (sigma(T) ~ 50), z = x_T;
measured max |mismatch| over the test points: 8.7e-3 (VP, subVP) and 2.9e-2 (VE) nats.
Everything runs in float64 with fixed seeds.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sde_diffusion.bits_per_dim import DataScaling, bits_per_dim, uniform_dequantize
from sde_diffusion.datasets import unequal_mixture
from sde_diffusion.divergence import draw_probes, exact_divergence, hutchinson_divergence
from sde_diffusion.likelihood import log_likelihood
from sde_diffusion.mixture import GaussianMixture
from sde_diffusion.sde import VESDE, VPSDE
from solvers.dopri5 import Dopri5
from solvers.explicit_rk import RK4
from solvers.scipy_ode import ScipyODE

from .conftest import cuda

F64 = torch.float64
EPS = 1e-5
DATA = unequal_mixture(dtype=F64)  # three unequal 2-D modes, one narrow (std 0.1)


def points(n: int, seed: int = 0) -> torch.Tensor:
    return DATA.sample(n, generator=torch.Generator().manual_seed(seed))


def errors(sde, res, x):
    """(ODE error, prior mismatch) per sample, against the exact log p_eps and log p_T."""
    exact = DATA.marginal_log_prob(x, EPS, sde)
    log_pT = DATA.marginal_log_prob(res.latent, sde.T, sde)
    return res.delta_logp + log_pT - exact, res.prior_logp - log_pT


# ------------------------------------------------------------------ trace estimators
def linear_field(seed: int = 0, dim: int = 5):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=F64)
    return a, (lambda x: x @ a.T + 1.0)


def test_divergence_of_a_linear_field_is_exact():
    """f(x) = A x + c: exact trace = tr A; one probe gives v^T A v; K probes average them."""
    a, f = linear_field()
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    y, div = exact_divergence(f, x)
    assert torch.allclose(y, f(x)) and torch.allclose(div, torch.trace(a).expand(3))
    probes = draw_probes(4, 3, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    _, est = hutchinson_divergence(f, x, probes)
    quad = torch.einsum("kbi,ij,kbj->kb", probes, a, probes)
    assert torch.allclose(est, quad.mean(0), atol=1e-12)
    with pytest.raises(ValueError, match="refused above 4 dimensions"):
        exact_divergence(f, x, max_dim=4)


def test_exact_divergence_of_a_nonlinear_field_matches_the_jacobian():
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)

    def f(x):
        return torch.tanh(x @ w) * x.sin()

    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    _, div = exact_divergence(f, x)
    for b in range(6):
        jac = torch.autograd.functional.jacobian(lambda u: f(u[None])[0], x[b])
        assert torch.allclose(div[b], torch.trace(jac), atol=1e-12)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_mean_and_variance(probe):
    """n = 20 000 single-probe estimates: mean tr A within 4 SE; variance 2(|S|_F^2 - sum S_ii^2)
    (Rademacher) or 2 |S|_F^2 (Gaussian), S = (A + A^T)/2, within 10% (~4 SE of a variance)."""
    a, f = linear_field(seed=3)
    n = 20_000
    x = torch.zeros(n, 5, dtype=F64)
    probes = draw_probes(
        1, n, 5, probe=probe, generator=torch.Generator().manual_seed(4), dtype=F64
    )
    _, est = hutchinson_divergence(f, x, probes)
    s = 0.5 * (a + a.T)
    var = 2 * (s.square().sum() - (s.diagonal().square().sum() if probe == "rademacher" else 0))
    assert abs(float(est.mean() - torch.trace(a))) < 4 * math.sqrt(var / n)
    assert float(est.var()) == pytest.approx(float(var), rel=0.10)


# ------------------------------------------------------------------ log-likelihood accuracy
@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_matches_the_exact_marginal_log_density(name):
    """Dopri5 at rtol = atol = 1e-7, exact trace, 64 points.

    ODE error (mismatch removed) < 1e-4 (measured max 1.5e-5); the mismatch itself < 0.05
    nats (measured 8.7e-3 VP/subVP, 2.9e-2 VE); logp - exact is their sum.
    """
    from .conftest import make_sde

    sde, x = make_sde(name), points(64)
    res = log_likelihood(sde, DATA.score_fn(sde), x, trace="exact", solver=Dopri5(1e-7, 1e-7))
    ode, mismatch = errors(sde, res, x)
    assert float(ode.abs().max()) < 1e-4
    assert float(mismatch.abs().max()) < 0.05
    exact = DATA.marginal_log_prob(x, EPS, sde)
    assert torch.all((res.logp - exact).abs() <= mismatch.abs() + 1e-4)
    assert res.logp.shape == (64,) and res.latent.shape == x.shape and res.nfe > 0


def test_default_dopri5_and_the_scipy_recipe_agree():
    """Both run Dormand–Prince 5(4) with the same controller at rtol = atol = 1e-5: they take
    the same steps, so they agree to rounding (measured 5e-15). Error against the exact value
    at that tolerance: max 3.2e-3, RMS 2.3e-4 nats (tested < 0.02 and < 2e-3)."""
    sde, x = VPSDE(), points(200)
    a = log_likelihood(sde, DATA.score_fn(sde), x, trace="exact")
    b = log_likelihood(sde, DATA.score_fn(sde), x, trace="exact", solver=ScipyODE())
    assert float((a.logp - b.logp).abs().max()) < 1e-9 and a.nfe == b.nfe
    ode, _ = errors(sde, a, x)
    assert float(ode.abs().max()) < 0.02 and float(ode.square().mean().sqrt()) < 2e-3


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_converges_as_the_tolerance_tightens(name):
    """Max ODE error at rtol = atol = 1e-3, 1e-5, 1e-7, 1e-9 (measured 0.18 ... 3e-9 on VP): the
    log-log slope against the tolerance is ~1.2 (measured 1.29 VP, 1.22 subVP, 1.22 VE between
    the end points); tested >= 0.8 (fitted), errors decreasing, finest < 1e-6."""
    from .conftest import make_sde

    sde, x = make_sde(name), points(64, seed=1)
    tols = [1e-3, 1e-5, 1e-7, 1e-9]
    errs = []
    for tol in tols:
        res = log_likelihood(sde, DATA.score_fn(sde), x, trace="exact", solver=Dopri5(tol, tol))
        errs.append(float(errors(sde, res, x)[0].abs().max()))
    assert all(e1 > e2 for e1, e2 in zip(errs, errs[1:], strict=False)), errs
    slope = torch.linalg.lstsq(
        torch.tensor([[math.log(t), 1.0] for t in tols], dtype=F64),
        torch.tensor([[math.log(e)] for e in errs], dtype=F64),
    ).solution[0, 0]
    assert float(slope) >= 0.8 and errs[-1] < 1e-6, (errs, float(slope))


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_fixed_step_rk4_runs_forward_with_order_four(name):
    """RK4 on a uniform grid from eps up to T: the order between 100 and 400 steps is 4
    (measured 4.06 VP, 4.15 subVP, 3.97 VE), tested in [3.5, 4.5]."""
    from .conftest import make_sde

    sde, x = make_sde(name), points(32, seed=2)
    steps = [100, 200, 400]
    errs = []
    for n in steps:
        res = log_likelihood(sde, DATA.score_fn(sde), x, trace="exact", solver=RK4(), steps=n)
        errs.append(float(errors(sde, res, x)[0].abs().max()))
        assert res.nfe == 4 * n
    slope = -(math.log(errs[-1]) - math.log(errs[0])) / (math.log(steps[-1]) - math.log(steps[0]))
    assert 3.5 <= slope <= 4.5, errs


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_mean_agrees_with_the_exact_trace(probe):
    """4 points, each repeated 400 times with its own probe (fixed along the path): the mean
    over the repeats equals the exact-trace value within 4 standard errors (+1e-4 for the
    ODE error at tol 1e-7), since the estimate is unbiased for the path integral."""
    sde, x = VESDE(), points(4, seed=3)
    reps = 400
    solver = Dopri5(1e-7, 1e-7)
    exact = log_likelihood(sde, DATA.score_fn(sde), x, trace="exact", solver=solver).logp
    hut = log_likelihood(
        sde,
        DATA.score_fn(sde),
        x.repeat_interleave(reps, 0),
        solver=solver,
        probe=probe,
        generator=torch.Generator().manual_seed(5),
    ).logp.reshape(4, reps)
    se = hut.std(dim=1) / math.sqrt(reps)
    assert torch.all((hut.mean(dim=1) - exact).abs() < 4 * se + 1e-4), (hut.mean(1), exact, se)
    assert torch.all(hut.std(dim=1) > 0)


def test_any_rank_float32_and_seeded_probes():
    """(B, 1, 2, 2) images of a 4-D mixture match the exact density within 0.02 (measured 7e-3, the prior mismatch);
    float32 stays float32 and is within 1e-3 of float64 (measured 3.3e-5); the same seed gives
    the same Hutchinson estimate and another seed another one."""
    means = torch.stack([torch.full((1, 2, 2), -1.0), torch.linspace(0, 1, 4).reshape(1, 2, 2)])
    data = GaussianMixture([0.3, 0.7], means.double(), stds=[0.3, 0.5])
    sde = VPSDE()
    score = data.score_fn(sde)
    x = data.sample(16, generator=torch.Generator().manual_seed(0))
    res = log_likelihood(sde, score, x, trace="exact")
    assert res.latent.shape == x.shape
    assert torch.allclose(res.logp, data.marginal_log_prob(x, EPS, sde), atol=0.02)
    f32 = log_likelihood(sde, score, x.float(), trace="exact")
    assert f32.logp.dtype == torch.float32
    assert torch.allclose(f32.logp.double(), res.logp, atol=1e-3)

    def hutchinson(seed):
        gen = torch.Generator().manual_seed(seed)
        return log_likelihood(sde, score, x, generator=gen, n_probes=2).logp

    assert torch.equal(hutchinson(1), hutchinson(1)) and not torch.equal(
        hutchinson(1), hutchinson(2)
    )


CONF = Path(__file__).resolve().parents[1] / "conf"
SOLVER_CONFIGS = sorted(p.stem for p in (CONF / "solver").glob("*.yaml"))


@pytest.mark.parametrize("solver_name", SOLVER_CONFIGS)
def test_every_solver_config_runs_forward_or_is_refused(solver_name):
    """Drift-only ODE solvers reach the exact value (ODE error < 0.02; measured 0.009 Euler at
    800 steps, 3e-3 Heun at 200, 5e-4 RK4 at 50, 2e-4 Dopri5/scipy at 1e-5); SDE solvers and
    solvers that need the score or marginal (exponential integrators) are refused clearly."""
    solver = instantiate(OmegaConf.load(CONF / "solver" / f"{solver_name}.yaml"))
    sde, x = VPSDE(), points(16)
    steps = None if solver.adaptive else {1: 800, 2: 200}.get(int(solver.order), 50)
    run = lambda: log_likelihood(  # noqa: E731
        sde, DATA.score_fn(sde), x, trace="exact", solver=solver, steps=steps
    )
    if solver.equation != "ode" or solver.stochastic or solver.requires:
        with pytest.raises(ValueError, match="deterministic ODE solver|drift-only ODE solver"):
            run()
        return
    assert float(errors(sde, run(), x)[0].abs().max()) < 0.02


# ------------------------------------------------------------------ bad input
def test_bad_input_is_refused_clearly():
    sde, x = VPSDE(), points(4)
    score = DATA.score_fn(sde)
    bad = x.clone()
    bad[2, 1] = torch.nan
    with pytest.raises(ValueError, match=r"NaN or inf in 1 of 4 samples \(indices 2\)"):
        log_likelihood(sde, score, bad)
    for eps in (0.0, -1e-3, 1.0, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"eps must"):
            log_likelihood(sde, score, x, eps=eps)
    for make, kw in ((Dopri5, "rtol"), (Dopri5, "atol"), (ScipyODE, "rtol"), (ScipyODE, "atol")):
        for tol in (0.0, -1e-5):
            with pytest.raises(ValueError, match=rf"{kw} must be a number in \(0, 1\)"):
                make(**{kw: tol})
    with pytest.raises(ValueError, match="trace must be"):
        log_likelihood(sde, score, x, trace="approx")
    with pytest.raises(ValueError, match="probe must be"):
        log_likelihood(sde, score, x, probe="sphere")
    with pytest.raises(ValueError, match="n_probes must be"):
        log_likelihood(sde, score, x, n_probes=0)
    with pytest.raises(ValueError, match="fixed-step solver: give steps"):
        log_likelihood(sde, score, x, solver=RK4())
    from solvers.euler_maruyama import EulerMaruyama

    with pytest.raises(ValueError, match="deterministic ODE solver"):
        log_likelihood(sde, score, x, solver=EulerMaruyama(), steps=10)

    from solvers.explicit_rk import Heun

    class NeedsMarginal(Heun):
        requires = ("marginal",)

    with pytest.raises(ValueError, match="needs the equation's marginal.*drift-only ODE solver"):
        log_likelihood(sde, score, x, solver=NeedsMarginal(), steps=10)

    def detached(x, t):
        with torch.no_grad():
            return score(x, t)

    with pytest.raises(ValueError, match="needs gradients"):
        log_likelihood(sde, detached, x)


def test_exact_trace_on_images_is_refused_before_any_evaluation():
    def score(x, t):
        raise AssertionError("the score must not be evaluated")

    x = torch.zeros(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"3072 per evaluation.*use trace='hutchinson'"):
        log_likelihood(VPSDE(), score, x, trace="exact")


# ------------------------------------------------------------------ bits per dimension
def test_bits_per_dim_change_of_variables():
    """A uniform model on the scaled cube is 8 bits/dim for any 8-bit scaling; the "+7" of
    data in [-1, 1) is -log2(2/256); and log p_V(v) = log p_X(a v + b) + D log|a| exactly."""
    dim = 12
    unit, centred = DataScaling.to_range(0.0, 1.0), DataScaling.to_range(-1.0, 1.0)
    assert (unit.scale, unit.shift, centred.scale, centred.shift) == (1 / 256, 0.0, 2 / 256, -1.0)
    uniform_logp = torch.tensor([0.0, -dim * math.log(2)], dtype=F64)  # U[0,1)^D, U[-1,1)^D
    assert float(bits_per_dim(uniform_logp[:1], dim, unit)) == pytest.approx(8.0)
    assert float(bits_per_dim(uniform_logp[1:], dim, centred)) == pytest.approx(8.0)
    logp = torch.tensor([-30.0, 5.0], dtype=F64)
    assert torch.allclose(bits_per_dim(logp, dim, centred), bits_per_dim(logp, dim) + 7.0)
    # x = a v + b ~ N(0, 1)  <=>  v ~ N(-b/a, 1/a^2): compare with the density of v directly
    scaling = DataScaling(scale=-0.03, shift=0.4)
    v = torch.rand(5, dim, generator=torch.Generator().manual_seed(0), dtype=F64) * 256
    log_px = torch.distributions.Normal(0.0, 1.0).log_prob(scaling(v)).sum(1)
    log_pv = torch.distributions.Normal(-0.4 / -0.03, 1 / 0.03).log_prob(v).sum(1)
    assert torch.allclose(bits_per_dim(log_px, dim, scaling), -log_pv / (dim * math.log(2)))
    assert torch.allclose(scaling.inverse(scaling(v)), v)


def test_uniform_dequantization():
    pixels = torch.arange(256).reshape(1, 256).repeat(50, 1)
    v = uniform_dequantize(pixels, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert torch.equal(v.floor().long(), pixels) and float(v.min()) >= 0 and float(v.max()) < 256
    assert float((v - pixels).mean()) == pytest.approx(0.5, abs=0.01)  # U[0,1): mean 1/2
    for bad in (torch.tensor([0.5]), torch.tensor([256]), torch.tensor([-1])):
        with pytest.raises(ValueError, match="pixels must"):
            uniform_dequantize(bad)
    with pytest.raises(ValueError, match="scale must be non-zero"):
        DataScaling(0.0)


# ------------------------------------------------------------------ the app
def app(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "sde_diffusion.apps.likelihood", f"hydra.run.dir={tmp_path}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # one thread, as in the other tests
    )


def test_app_end_to_end(tmp_path):
    out = app(tmp_path, "num_samples=200", "trace=exact", "sde=ve", "batch_size=128")
    assert out.returncode == 0, out.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["num_samples"] == 200 and m["dim"] == 2 and m["nfe"] > 0
    numbers = [v for v in m.values() if isinstance(v, float)] + m["nll_ci95"] + m["bpd_ci95"]
    assert all(math.isfinite(v) for v in numbers)
    lo, hi = m["nll_ci95"]
    assert lo < m["nll_mean"] < hi and m["abs_error_mean"] < 0.01
    assert m["bpd_mean"] == pytest.approx(m["nll_mean"] / (2 * math.log(2)))
    assert abs(m["nll_mean"] - m["exact_nll_mean"]) < 0.01
    assert (tmp_path / "logp.npz").is_file()


def test_app_refuses_a_zero_tolerance_in_one_line(tmp_path):
    out = app(tmp_path, "solver=ode_scipy", "solver.rtol=0")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: solver: rtol must be a number in (0, 1), got 0"
    assert not (tmp_path / "metrics.json").exists() and (tmp_path / "failure.json").is_file()


@cuda
def test_cuda_matches_cpu():
    sde, x = VPSDE(), points(32)
    cpu = log_likelihood(sde, DATA.score_fn(sde), x, trace="exact")
    gpu = log_likelihood(sde, DATA.score_fn(sde), x.cuda(), trace="exact")
    assert gpu.logp.is_cuda and torch.allclose(gpu.logp.cpu(), cpu.logp, atol=1e-8)
