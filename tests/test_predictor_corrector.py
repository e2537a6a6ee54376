"""The predictor–corrector sampler on Gaussian data, where every score and marginal is exact.

Data x_0 ~ N(m, s^2 I) pushed through a VP-like or a VE-like linear SDE (closed forms written
inline, no sde_diffusion) has marginal p_t = N(alpha_t m, (alpha_t^2 s^2 + sigma_t^2) I) and
score -(x - alpha_t m) / (alpha_t^2 s^2 + sigma_t^2). Float64, fixed seeds; each tolerance is
stated next to its check. Statistics pool the coordinates: z = (x - mean) / std should be
N(0, 1), so with n draws the standard error of mean(z) is 1/sqrt(n), of var(z) sqrt(2/n).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from solvers.correctors import AnnealedLangevinCorrector, LangevinCorrector
from solvers.equation import Equation
from solvers.grids import UniformGrid
from solvers.integrate import integrate
from solvers.noise import GeneratorNoise
from solvers.predictor_corrector import CORRECTORS, PREDICTORS, PredictorCorrector
from solvers.predictors import AncestralPredictor, ReverseDiffusionPredictor

DT = torch.float64
EPS = 1e-3
S = 0.5  # data std


def gaussian_problem(kind: str, m: torch.Tensor, s: float = S):
    """(equation, moments) for data N(m, s^2 I) under a VP-like or VE-like SDE on [0, 1]."""
    if kind == "vp":  # beta(t) = 0.1 + 19.9 t, alpha = exp(-int beta / 2), sigma^2 = 1 - alpha^2
        beta = lambda t: 0.1 + 19.9 * t  # noqa: E731

        def marginal(t):
            log_alpha = -0.25 * t**2 * 19.9 - 0.05 * t
            return log_alpha.exp(), (-torch.expm1(2 * log_alpha)).sqrt()

        f = lambda x, t: -0.5 * beta(t)[:, None] * x  # noqa: E731
        g = lambda t: beta(t).sqrt()  # noqa: E731
    else:  # sigma(t)^2 = 0.01^2 (r^(2t) - 1), r = 1000, so g^2 = d sigma^2 / dt; alpha = 1
        log_r = math.log(1000.0)

        def marginal(t):
            return torch.ones_like(t), (1e-4 * torch.expm1(2 * t * log_r)).sqrt()

        f = lambda x, t: torch.zeros_like(x)  # noqa: E731
        g = lambda t: 0.01 * torch.exp(t * log_r) * math.sqrt(2 * log_r)  # noqa: E731

    def moments(t):
        alpha, sigma = marginal(t)
        return alpha[:, None] * m, (alpha**2 * s**2 + sigma**2)[:, None]

    def score(x, t):
        mean, var = moments(t)
        return -(x - mean) / var

    def drift(x, t):
        return f(x, t) - (g(t) ** 2)[:, None] * score(x, t)

    return Equation(drift=drift, diffusion=g, score=score, marginal=marginal), moments


def exact_sample(moments, t: float, shape, gen):
    mean, var = moments(torch.tensor([t], dtype=DT))
    return mean + var.sqrt() * torch.randn(shape, generator=gen, dtype=DT)


def standardise(x, moments, t: float):
    mean, var = moments(torch.tensor([t], dtype=DT))
    return (x - mean) / var.sqrt()


class RowNoise:
    """Draws that depend on (call number, row) only, so row 0 is the same in any batch."""

    def __init__(self, seed: int = 0) -> None:
        self.seed, self.calls = seed, 0

    def normal(self, like):
        self.calls += 1
        rows = [
            torch.randn(
                like.shape[1:],
                generator=torch.Generator().manual_seed(self.seed + 7919 * self.calls + i),
                dtype=like.dtype,
            )
            for i in range(like.shape[0])
        ]
        return torch.stack(rows)

    def increment(self, t, t_next, like):
        return self.normal(like) * (t_next - t).abs().sqrt()


class FixedNoise:
    """Always the same draw z (increments z sqrt|dt|): for checking one step by hand."""

    def __init__(self, z):
        self.z = z

    def normal(self, like):
        return self.z

    def increment(self, t, t_next, like):
        return self.z * (t_next - t).abs().sqrt()


class ProbeNoise:
    """Draw k of a step is 1 in row 2 + k and 0 elsewhere (increments: times sqrt|dt|)."""

    def __init__(self) -> None:
        self.calls = 0

    def normal(self, like):
        z = torch.zeros_like(like)
        z[2 + self.calls] = 1
        self.calls += 1
        return z

    def increment(self, t, t_next, like):
        return self.normal(like) * (t_next - t).abs().sqrt()


def scheme_moments(solver, eq, mean, var, grid, draws: int = 4):
    """The exact mean and variance of the scheme's output, computed through its own steps.

    With a linear score, the predictors and the annealed corrector are affine in x and their
    draws: x' = A x + b + sum_k c_k z_k. Probing rows (x = 0), (x = 1) and (x = 0, z_k = 1)
    gives b, A and c_k, then mean' = A mean + b and var' = A^2 var + sum_k c_k^2 exactly: no
    Monte Carlo error. (Not for the Langevin corrector, whose step depends on ||z||.)
    """
    for i in range(grid.numel() - 1):
        x = torch.zeros(2 + draws, *mean.shape[1:], dtype=DT)
        x[1] = 1
        out, _ = solver.step(eq, x, grid[i], grid[i + 1], None, ProbeNoise())
        b = out[0]
        mean, var = (out[1] - b) * mean + b, (out[1] - b) ** 2 * var + ((out[2:] - b) ** 2).sum(0)
    return mean, var


COMBOS = [(p, c) for p in PREDICTORS for c in CORRECTORS]
PUBLISHED_VARIANCE = {
    "euler_maruyama": None,
    "reverse_diffusion": "forward",
    "ancestral": "posterior",
}


# --- Every predictor x corrector samples the marginal ------------------------------------------
@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("predictor,corrector", COMBOS)
def test_every_combination_samples_the_marginal_at_eps(kind, predictor, corrector):
    """Start from the exact p_1, take 200 uniform steps to eps = 1e-3 with integrate().

    n = 64 x 512 = 32768 pooled draws: SE(mean z) = 0.0055, SE(var z) = 0.0078.
    Affine schemes (no corrector, annealed Langevin): the samples match the scheme's exact
    moments (scheme_moments) to 5 SE (measured <= 3.5 SE), and those differ from the true
    marginal only by the weak-order-1 bias, < 0.02 in mean z and < 0.08 in var z at 200 steps
    (measured <= 0.012, Euler-Maruyama on VP, and 0.068, ancestral on VP). Langevin (not
    affine): the samples match the true marginal to 5 SE + 0.01 (mean) and 5 SE + 0.045 (var:
    the ULA bias ~ snr^2 = 0.026 plus the predictor's); measured |mean z| <= 0.007,
    |var z - 1| <= 0.026.
    """
    d, batch = 512, 64
    m = 1.0 + torch.linspace(0, 1, d, dtype=DT)  # all positive: a mean error cannot cancel
    eq, moments = gaussian_problem(kind, m)
    gen = torch.Generator().manual_seed(1)
    x = exact_sample(moments, 1.0, (batch, d), gen)
    solver, grid = PredictorCorrector(predictor, corrector), UniformGrid()(1.0, EPS, 200)
    sol = integrate(solver, eq, x, grid, generator=gen)
    mean, var = moments(torch.tensor([EPS], dtype=DT))
    if corrector == "langevin":
        z = (sol.x - mean) / var.sqrt()
        assert abs(float(z.mean())) < 5 * 0.0055 + 0.01
        assert abs(float(z.var()) - 1) < 5 * 0.0078 + 0.045
        return
    mean_s, var_s = scheme_moments(solver, eq, *moments(torch.ones(1, dtype=DT)), grid)
    z = (sol.x - mean_s) / var_s.sqrt()
    assert abs(float(z.mean())) < 5 * 0.0055 and abs(float(z.var()) - 1) < 5 * 0.0078
    assert float(((mean_s - mean) / var.sqrt()).abs().max()) < 0.02
    assert float((var_s / var - 1).abs().max()) < 0.08


# --- Predictors: measured weak order, exact properties, reference formulas -------------------
@pytest.mark.parametrize("kind", ["vp", "ve"])
@pytest.mark.parametrize("predictor", list(PREDICTORS))
def test_predictors_have_weak_order_one(kind, predictor):
    """Exact moment errors at eps (scheme_moments, no Monte Carlo) over N = 100..800 steps.

    Fitted log-log slopes of |var/var_exact - 1| (VP, VE): Euler-Maruyama 1.03, 2.47 (its
    variance error is second order on VE); reverse diffusion 1.01, 1.02; ancestral 0.90
    (local slopes 0.86 -> 0.95, still approaching 1), 0.98. Band: > 0.85, and < 1.2 except
    EM on VE. Mean errors (VP; VE means stay exact): EM 1.00 and reverse diffusion 1.02; the
    ancestral mean is exact to round-off (the posterior mean is linear in E[x_0 | x_t]).
    Measured on the published noise variances (forward for reverse diffusion, posterior for
    ancestral): the default midpoint variance has a smaller first-order coefficient, which on
    VE for this data nearly vanishes (|var error| 6e-4 -> 1.5e-5, crossing zero, at 200-1600
    steps), so no slope is measurable there; on VP its local slopes rise 0.76 -> 0.93 at
    100-1600 steps. tests/test_reference_parity.py checks the midpoint against the TV floor.
    """
    eq, moments = gaussian_problem(kind, torch.ones(1, dtype=DT))
    start, (mean, var) = moments(torch.ones(1, dtype=DT)), moments(torch.tensor([EPS], dtype=DT))
    steps, dm, dv = [100, 200, 400, 800], [], []
    for n in steps:
        grid = UniformGrid()(1.0, EPS, n)
        solver = PredictorCorrector(predictor, "none", variance=PUBLISHED_VARIANCE[predictor])
        mean_s, var_s = scheme_moments(solver, eq, *start, grid)
        dm.append(abs(float((mean_s - mean) / var.sqrt())))
        dv.append(abs(float(var_s / var - 1)))
    slope = -np.polyfit(np.log(steps), np.log(dv), 1)[0]
    assert slope > 0.85 and (slope < 1.2 or (kind, predictor) == ("ve", "euler_maruyama")), dv
    if predictor == "ancestral" or kind == "ve":
        assert max(dm) < 1e-12, dm
    else:
        slope = -np.polyfit(np.log(steps), np.log(dm), 1)[0]
        assert 0.9 < slope < 1.1, dm


def test_ve_ancestral_and_reverse_diffusion_reduce_to_the_reference_steps():
    """With alpha = 1: ancestral = x + (st^2 - ss^2) s + sqrt((st^2 - ss^2) ss^2 / st^2) z and
    reverse diffusion = x + (st^2 - ss^2) s + sqrt(st^2 - ss^2) z (Song et al. 2021, Eq. 47
    and the reference SMLD ancestral step). Exact to 1e-12."""
    eq, _ = gaussian_problem("ve", torch.tensor([0.3, 2.0], dtype=DT))
    gen = torch.Generator().manual_seed(3)
    x, z = torch.randn(5, 2, generator=gen, dtype=DT), torch.randn(5, 2, generator=gen, dtype=DT)
    t, s = torch.tensor(0.6, dtype=DT), torch.tensor(0.55, dtype=DT)
    st2, ss2 = (eq.marginal(u.reshape(1))[1] ** 2 for u in (t, s))
    score = eq.score(x, t.expand(5))
    anc = AncestralPredictor(variance="posterior").update(eq, x, t, s, FixedNoise(z))
    ref_anc = x + (st2 - ss2) * score + ((st2 - ss2) * ss2 / st2).sqrt() * z
    torch.testing.assert_close(anc, ref_anc, rtol=1e-12, atol=1e-12)
    rd = ReverseDiffusionPredictor(variance="forward").update(eq, x, t, s, FixedNoise(z))
    torch.testing.assert_close(rd, x + (st2 - ss2) * score + (st2 - ss2).sqrt() * z)


def test_vp_reverse_diffusion_is_the_reference_with_beta_from_the_exact_ratio():
    """VP reference: x - (sqrt(1 - beta) - 1) x + beta s + sqrt(beta) z; here 1 - beta = a^2
    with a = alpha(t)/alpha(t_next), i.e. v = sigma_t^2 - a^2 sigma_s^2 = 1 - a^2."""
    eq, _ = gaussian_problem("vp", torch.tensor([0.3, 2.0], dtype=DT))
    gen = torch.Generator().manual_seed(4)
    x, z = torch.randn(5, 2, generator=gen, dtype=DT), torch.randn(5, 2, generator=gen, dtype=DT)
    t, s = torch.tensor(0.6, dtype=DT), torch.tensor(0.55, dtype=DT)
    a = eq.marginal(t.reshape(1))[0] / eq.marginal(s.reshape(1))[0]
    beta = 1 - a**2
    ref = x - (a - 1) * x + beta * eq.score(x, t.expand(5)) + beta.sqrt() * z
    out = ReverseDiffusionPredictor(variance="forward").update(eq, x, t, s, FixedNoise(z))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


# --- Correctors at a fixed time ----------------------------------------------------------------
N_FIXED = 32768  # 64 x 512 draws at the fixed time


def _fixed_time_target(t: float = 0.5, t_next: float = 0.45):
    """VP-like p_t at t = 0.5: mean mu, variance V = 0.941, sigma_t^2 = 0.921, and
    a^2 = alpha(t)^2 / alpha(t_next)^2 = 0.620 (so a wrong alpha_i shows)."""
    eq, moments = gaussian_problem("vp", torch.ones(1, dtype=DT))
    tt, tn = torch.tensor(t, dtype=DT), torch.tensor(t_next, dtype=DT)
    mean, var = (float(v) for v in moments(tt.reshape(1)))
    a2 = float((eq.marginal(tt.reshape(1))[0] / eq.marginal(tn.reshape(1))[0]) ** 2)
    sigma2 = float(eq.marginal(tt.reshape(1))[1] ** 2)
    return eq, tt, tn, mean, var, a2, sigma2


def test_annealed_langevin_follows_the_exact_moment_recursion():
    """eps = 2 a^2 (snr sigma_t)^2 is deterministic and the score linear, so from N(mu + 0.3, 2V)
    each step maps the mean offset d -> (1 - eps/V) d and var w -> (1 - eps/V)^2 w + 2 eps.
    After 5 steps at snr = 0.3: mean and var within 5 SE of the prediction (measured 0.5 and
    0.5 SE). Dropping a^2 would move the mean by 9 SE."""
    eq, t, tn, mu, var, a2, sigma2 = _fixed_time_target()
    gen = torch.Generator().manual_seed(5)
    x = mu + 0.3 + math.sqrt(2 * var) * torch.randn(64, 512, generator=gen, dtype=DT)
    y = AnnealedLangevinCorrector(snr=0.3, n_steps=5).update(eq, x, t, tn, GeneratorNoise(gen))
    eps = 2 * a2 * 0.09 * sigma2
    r, d, w = 1 - eps / var, 0.3, 2 * var
    for _ in range(5):
        d, w = r * d, r**2 * w + 2 * eps
    assert abs(float(y.mean()) - (mu + d)) < 5 * math.sqrt(w / N_FIXED)
    assert abs(float(y.var()) / w - 1) < 5 * math.sqrt(2 / N_FIXED)


def test_langevin_batch_step_reaches_the_ula_stationary_variance():
    """With batch-mean norms, eps = 2 a^2 snr^2 V^2 / W when var(x) = W, and the ULA fixed
    point W = (1 - eps/V)^2 W + 2 eps gives W / V = 1 + a^2 snr^2 (= 1.155 at snr = 0.5,
    a^2 = 0.62). 40 steps (contraction ~0.73 each) from exact p_t; 5 SE (measured W/V = 1.153,
    0.3 SE). A missing factor 2 or a^2 would give 1.078 or 1.25."""
    eq, t, tn, mu, var, a2, _ = _fixed_time_target()
    gen = torch.Generator().manual_seed(6)
    x = mu + math.sqrt(var) * torch.randn(64, 512, generator=gen, dtype=DT)
    y = LangevinCorrector(0.5, 40, "batch").update(eq, x, t, tn, GeneratorNoise(gen))
    q = 1 + a2 * 0.25
    assert abs(float(y.mean()) - mu) < 5 * math.sqrt(q * var / N_FIXED)
    assert abs(float(y.var()) / var - q) < 5 * q * math.sqrt(2 / N_FIXED)


@pytest.mark.parametrize("step_size", ["per_sample", "batch"])
@pytest.mark.parametrize("corrector", ["langevin", "annealed_langevin"])
def test_one_corrector_step_leaves_the_exact_gaussian_invariant(corrector, step_size):
    """From x ~ p_t = N(mu, V I), d = 512, one step at snr = 0.16 changes the sample's moments
    only by the O((eps/V)^2) = 0.001 ULA bias (+ O(1/d) for per-sample norms).

    Paired: y - x = eps s + sqrt(2 eps) z with eps/V ~ 0.032, so the change of mean z has SE
    sqrt(2 eps/V / n) = 0.0014 and the change of var z is dominated by the cross term,
    SE 2 sqrt(2 eps/V / n) = 0.0028. Tolerances 5 SE (+ 0.002 bias on the variance);
    measured |d mean| <= 0.0014, |d var| <= 0.001.
    """
    eq, t, tn, mu, var, _, _ = _fixed_time_target()
    gen = torch.Generator().manual_seed(7)
    x = mu + math.sqrt(var) * torch.randn(64, 512, generator=gen, dtype=DT)
    if corrector == "langevin":
        part = LangevinCorrector(step_size=step_size)
    else:
        part = AnnealedLangevinCorrector()
    y = part.update(eq, x, t, tn, GeneratorNoise(gen))
    assert abs(float(y.mean() - x.mean())) / math.sqrt(var) < 5 * 0.0014
    assert abs(float(y.var() / x.var()) - 1) < 5 * 0.0028 + 0.002


@pytest.mark.parametrize("corrector", ["langevin", "annealed_langevin"])
def test_per_sample_steps_make_a_sample_independent_of_its_batch(corrector):
    """Row 0 sampled alone equals row 0 of a batch of 4 (same draws per row): to 1e-13 with
    per-sample norms and for annealed Langevin; the reference's batch norms move it."""
    eq, moments = gaussian_problem("vp", torch.linspace(0, 1, 32, dtype=DT))
    x = exact_sample(moments, 1.0, (4, 32), torch.Generator().manual_seed(8))
    grid = UniformGrid()(1.0, EPS, 10)
    out = {}
    for step_size in ["per_sample", "batch"]:
        solver = PredictorCorrector("reverse_diffusion", corrector, n_steps=2, step_size=step_size)
        alone = integrate(solver, eq, x[:1], grid, noise=RowNoise()).x
        batch = integrate(solver, eq, x, grid, noise=RowNoise()).x
        out[step_size] = (alone[0] - batch[0]).abs().max()
    assert out["per_sample"] < 1e-13
    if corrector == "langevin":
        assert out["batch"] > 1e-6
    else:
        assert out["batch"] < 1e-13  # the annealed step never looks at the batch


# --- Bookkeeping: NFE, determinism, validation -------------------------------------------------
@pytest.mark.parametrize("n_steps", [1, 3])
@pytest.mark.parametrize("predictor,corrector", COMBOS)
def test_nfe_is_one_plus_n_steps_per_step(predictor, corrector, n_steps):
    eq, moments = gaussian_problem("ve", torch.zeros(3, dtype=DT))
    solver = PredictorCorrector(predictor, corrector, n_steps=n_steps)
    x = exact_sample(moments, 1.0, (2, 3), torch.Generator().manual_seed(0))
    sol = integrate(solver, eq, x, UniformGrid()(1.0, EPS, 5), generator=torch.Generator())
    per_step = 1 if corrector == "none" else 1 + n_steps
    assert solver.nfe_per_step == per_step and sol.nfe == 5 * per_step and sol.steps == 5


@pytest.mark.parametrize("predictor,corrector", COMBOS)
def test_same_seed_same_samples_other_seed_differs(predictor, corrector):
    eq, moments = gaussian_problem("vp", torch.ones(4, dtype=DT))
    solver, grid = PredictorCorrector(predictor, corrector), UniformGrid()(1.0, EPS, 8)
    x = exact_sample(moments, 1.0, (3, 4), torch.Generator().manual_seed(0))

    def run(seed):
        return integrate(solver, eq, x, grid, generator=torch.Generator().manual_seed(seed)).x

    assert torch.equal(run(9), run(9))
    assert not torch.allclose(run(9), run(10))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"predictor": "heun"}, "predictor must be one of euler_maruyama, reverse_diffusion, anc"),
        ({"corrector": "hmc"}, "corrector must be one of none, langevin, annealed_langevin"),
        ({"snr": 0.0}, "snr must be"),
        ({"snr": -0.1}, "snr must be"),
        ({"snr": float("nan")}, "snr must be"),
        ({"snr": float("inf")}, "snr must be"),
        ({"snr": True}, "snr must be"),
        ({"n_steps": 0}, "n_steps must be an integer >= 1"),
        ({"n_steps": 1.5}, "n_steps must be an integer >= 1"),
        ({"n_steps": True}, "n_steps must be an integer >= 1"),
        ({"step_size": "global"}, "step_size must be one of per_sample, batch"),
    ],
)  # fmt: skip
def test_bad_hyperparameters_are_refused_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PredictorCorrector(**kwargs)


def test_check_refuses_an_ode_and_only_the_fields_the_chosen_parts_need():
    eq, _ = gaussian_problem("vp", torch.ones(1, dtype=DT))
    x, grid = torch.zeros(2, 1, dtype=DT), UniformGrid()(1.0, EPS, 3)
    ode = Equation(drift=eq.drift, score=eq.score, marginal=eq.marginal)
    with pytest.raises(ValueError, match="langevin corrector.*not stochastic"):
        integrate(PredictorCorrector(), ode, x, grid)
    no_marginal = Equation(drift=eq.drift, diffusion=eq.diffusion, score=eq.score)
    with pytest.raises(ValueError, match="needs the equation's marginal"):
        integrate(PredictorCorrector("ancestral", "none"), no_marginal, x, grid)
    with pytest.raises(ValueError, match="needs the equation's marginal"):
        integrate(PredictorCorrector("euler_maruyama", "langevin"), no_marginal, x, grid)
    bare = Equation(drift=eq.drift, diffusion=eq.diffusion)
    with pytest.raises(ValueError, match="needs the equation's score, marginal"):
        integrate(PredictorCorrector("reverse_diffusion", "none"), bare, x, grid)
    solver = PredictorCorrector("euler_maruyama", "none")  # needs nothing optional
    assert solver.needs() == ()
    assert integrate(solver, bare, x, grid, generator=torch.Generator()).nfe == 3


# --- End to end through sde_diffusion, and CUDA ------------------------------------------------
@pytest.mark.parametrize("name", ["vp", "ve"])
def test_end_to_end_sampling_with_the_library_sdes(name):
    """sde_diffusion.sample with the default PC sampler and the exact Gaussian score: N(1, 0.25)
    data, prior start, 200 steps. Moments at eps within the Langevin tolerances above
    (measured |mean z| <= 0.004, |var z - 1| <= 0.031)."""
    from sde_diffusion.sampling import sample
    from sde_diffusion.sde import VESDE, VPSDE

    sde = VPSDE() if name == "vp" else VESDE()

    def score(x, t):
        alpha, sigma = sde.marginal(t)
        return -(x - alpha[:, None]) / (alpha**2 * S**2 + sigma**2)[:, None]

    gen = torch.Generator().manual_seed(11)
    res = sample(
        sde,
        score,
        PredictorCorrector(corrector="langevin"),
        (64, 512),
        steps=200,
        generator=gen,
        dtype=DT,
    )
    alpha, sigma = sde.marginal(torch.tensor([sde.eps], dtype=DT))
    z = (res.x - alpha) / (alpha**2 * S**2 + sigma**2).sqrt()
    assert res.nfe == 400
    assert abs(float(z.mean())) < 5 * 0.0055 + 0.01
    assert abs(float(z.var()) - 1) < 5 * 0.0078 + 0.045


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("predictor,corrector", COMBOS)
@pytest.mark.parametrize("step_size", ["per_sample", "batch"])
def test_steps_make_no_host_sync_on_cuda(predictor, corrector, step_size):
    dev = torch.device("cuda")
    eq, _ = gaussian_problem("vp", torch.tensor(1.0, device=dev))
    x = torch.randn(8, 3, 4, 4, device=dev)
    eq4 = Equation(
        drift=lambda x, t: eq.drift(x.flatten(1), t).reshape(x.shape),
        diffusion=eq.diffusion,
        score=lambda x, t: eq.score(x.flatten(1), t).reshape(x.shape),
        marginal=eq.marginal,
    )
    grid = UniformGrid()(1.0, EPS, 5).to(dev, x.dtype)
    noise = GeneratorNoise(torch.Generator(device=dev).manual_seed(0))
    solver = PredictorCorrector(predictor, corrector, n_steps=2, step_size=step_size)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(5):
            x, _ = solver.step(eq4, x, grid[i], grid[i + 1], None, noise)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert x.device.type == "cuda" and x.dtype == torch.float32 and torch.isfinite(x).all()
