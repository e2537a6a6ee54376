"""Issue 15: the inverse-problem methods against the exact posterior of a Gaussian mixture.

Prior: three 2-D components; y observes x_1 (Mask) at 0.2, noiselessly or with sigma_y = 0.3,
so p(x | y) is bimodal in x_2 with weights (0.63, 0.37) (noiseless). Every method's samples
are graded by the histogram TV to the exact noised posterior p_eps(x | y), divided by the TV
floor of exact samples at the same n (ratio 1: indistinguishable from exact sampling). The
noiseless posterior is degenerate in x_1, so there the TV is that of x_2 (128 bins); the noisy
one is graded in 2-D (32 x 32 bins). Tolerances sit above the ratios measured over four
seeds (given per case) on this machine; the float64 runs are deterministic per seed.
"""

import glob
import math
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate

from sde_diffusion.inverse import AvgPool, Identity, Mask, posterior
from sde_diffusion.inverse.masks import make_mask
from sde_diffusion.inverse.methods import DPS, SMC, PiGDM, RePaint, Replacement
from sde_diffusion.inverse.methods._common import spectral
from sde_diffusion.inverse.methods.replacement import project
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.mixture import GaussianMixture
from sde_diffusion.sde import VESDE, VPSDE
from solvers import Dopri5, EulerMaruyama, GeneratorNoise

from .conftest import make_sde

F64 = torch.float64
PRIOR = GaussianMixture(
    [0.3, 0.2, 0.5], [[0.0, -1.5], [0.3, 1.5], [2.0, 0.0]], stds=[0.4, 0.5, 0.5], dtype=F64
)
Y = torch.tensor([0.2], dtype=F64)
SOLVER_CONFIGS = sorted(glob.glob(str(Path(__file__).resolve().parents[1] / "conf/solver/*.yaml")))


def _grader(sigma_y: float, sde):
    """The exact p_eps(x | y) and a function giving a sample set's TV / floor against it."""
    post = posterior(PRIOR, Mask([True, False], sigma_y=sigma_y), Y).at(sde.eps, sde)
    if sigma_y == 0:  # degenerate in x_1: grade the x_2 marginal
        x2 = GaussianMixture(post.weights, post.means[:, 1:], covs=post.covs[:, 1:, 1:], dtype=F64)
        return lambda x: tv_to_mixture(x[:, 1:], x2).ratio
    return lambda x: tv_to_mixture(x, post, bins=32).ratio


# (name, method, its kwargs, max ratio noiseless, max ratio noisy); measured at n = 3000, 100
# steps, VP, seeds 0-3 (noiseless; noisy): replacement 1.84-2.03; 1.28-1.42 (its known bias:
# the missing part never sees y, so the mode weights stay near the prior's), RePaint(10, 5)
# 1.05-1.23; 1.08-1.19, DPS (sigma 0.1 when noiseless) 2.82-3.07; 1.30-1.39, PiGDM 0.97-1.08;
# 1.00-1.08, SMC(8) 0.97-1.24; 0.98-1.04.
CASES = [
    ("replacement", Replacement(), {"solver": EulerMaruyama()}, 2.4, 1.7),
    ("repaint", RePaint(10, 5), {"solver": EulerMaruyama()}, 1.5, 1.45),
    ("dps", None, {"solver": EulerMaruyama()}, 3.6, 1.65),
    ("pigdm", PiGDM(), {"solver": EulerMaruyama()}, 1.3, 1.3),
    ("smc", SMC(8), {}, 1.45, 1.3),
]


@pytest.mark.parametrize("sigma_y", [0.0, 0.3])
@pytest.mark.parametrize(("name", "method", "kw", "tol0", "tol1"), CASES, ids=[c[0] for c in CASES])
def test_method_against_exact_posterior(name, method, kw, tol0, tol1, sigma_y):
    sde = VPSDE()
    if method is None:
        method = DPS(sigma=0.1 if sigma_y == 0 else None)
    op = Mask([True, False], sigma_y=sigma_y)
    res = method.sample(
        sde, PRIOR.score_fn(sde), op, Y, (3000, 2), steps=100,
        generator=torch.Generator().manual_seed(0), dtype=F64, **kw,
    )  # fmt: skip
    ratio = _grader(sigma_y, sde)(res.x)
    assert ratio < (tol0 if sigma_y == 0 else tol1), f"{name}: TV / floor = {ratio:.3f}"


def test_smc_error_falls_towards_the_floor_as_particles_grow():
    """TV / floor of SMC at 1, 4 and 16 particles per sample (100 steps, noiseless, n = 2000).

    Measured (seeds 0-1, n = 3000): 2.4-2.6, 1.2-1.3, 1.06-1.22: one particle is the proposal
    alone, biased like replacement; the weights remove that bias as particles grow."""
    sde, grade = VPSDE(), _grader(0.0, VPSDE())
    op = Mask([True, False])
    ratios = []
    for k in (1, 4, 16):
        g = torch.Generator().manual_seed(1)
        res = SMC(k).sample(sde, PRIOR.score_fn(sde), op, Y, (2000, 2), steps=100, generator=g,
                            dtype=F64)  # fmt: skip
        assert res.nfe == 100 * k
        ratios.append(grade(res.x))
    assert ratios[0] > 1.8 and ratios[0] > ratios[1] > ratios[2], ratios
    assert ratios[2] < 1.4, ratios


def test_smc_error_falls_as_steps_grow():
    """Noisy (sigma_y = 0.3), 16 particles: the kernel's bias goes with the steps (4, 8, 40:
    measured 3.6, 1.4-1.5, 1.0-1.03 at n = 3000, seeds 0-1)."""
    sde, grade = VPSDE(), _grader(0.3, VPSDE())
    op = Mask([True, False], sigma_y=0.3)
    ratios = [
        grade(SMC(16).sample(sde, PRIOR.score_fn(sde), op, Y, (3000, 2), steps=s,
                             generator=torch.Generator().manual_seed(0), dtype=F64).x)
        for s in (4, 8, 40)
    ]  # fmt: skip
    assert ratios[0] > 2.5 and ratios[0] > ratios[1] > ratios[2] and ratios[2] < 1.25, ratios


@pytest.mark.parametrize("sde_name", ["ve", "subvp"])
def test_smc_near_the_floor_under_other_sdes_in_float32(sde_name):
    """Only the SDE's marginal is used: VE and sub-VP, float32, sigma_y = 0.3 (measured 1.05
    and 1.05 at seed 0; 1.01 and 1.00 in float64)."""
    sde = make_sde(sde_name)
    op = Mask([True, False], sigma_y=0.3)
    post = posterior(PRIOR, op, Y).at(sde.eps, sde)
    res = SMC(8).sample(sde, PRIOR.score_fn(sde), op, Y, (3000, 2), steps=100,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert res.x.dtype == torch.float32
    assert tv_to_mixture(res.x.double(), post, bins=32).ratio < 1.3


# ---------------------------------------------------------------------- known answers
@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
@pytest.mark.parametrize("op", [Mask([1, 0, 1]), AvgPool(3, sigma_y=0.2), Identity(0.5)], ids=str)
def test_pigdm_is_exact_for_a_gaussian_prior(sde, op):
    """For x_0 ~ N(0, c I), p(x_0 | x_t) = N(x0_hat, r_t^2 I) exactly, so PiGDM's score is the
    exact noised-posterior score at every t: to 1e-7 relative (the exact noiseless posterior is
    degenerate, its eigenvalues floored at 1e-12 of the largest; scores reach 2e4 under VE)."""
    c = 1.7
    prior = GaussianMixture([1.0], [[0.0, 0.0, 0.0]], stds=[math.sqrt(c)], dtype=F64)
    y = torch.tensor([0.4, -0.3] if isinstance(op, Mask) else [0.4] if isinstance(op, AvgPool)
                     else [0.4, -0.3, 1.1], dtype=F64)  # fmt: skip
    exact = posterior(prior, op, y)
    score = PiGDM(prior_var=c).posterior_score(sde, prior.score_fn(sde), op, y[None], (3,))
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    for t in (0.05, 0.3, 0.9):
        tt = torch.full((6,), t, dtype=F64)
        torch.testing.assert_close(score(x, tt), exact.score(x, tt, sde), rtol=1e-7, atol=1e-9)


def test_replacement_step_is_the_reference_inpainting():
    """Mask, sigma_y = 0: the observed entries become alpha_t y + sigma_t z, the rest stay."""
    sde = VPSDE()
    mask = make_mask("center", (1, 4, 4))
    op = Mask(mask)
    y = torch.randn(1, op.n_observed, generator=torch.Generator().manual_seed(0), dtype=F64)
    x = torch.randn(20000, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    t = torch.tensor(0.4, dtype=F64)
    out = project(spectral(op, y, (1, 4, 4)), sde.marginal, x, t, GeneratorNoise(torch.Generator()))
    alpha, sigma = sde.marginal(t.reshape(1))
    assert torch.equal(out[:, ~mask], x[:, ~mask])
    obs = out[:, mask]
    torch.testing.assert_close(obs.mean(0), (alpha * y[0]), atol=4 * float(sigma) / 141, rtol=0)
    torch.testing.assert_close(obs.std(0), sigma.expand(op.n_observed), atol=0.02, rtol=0)


def test_replacement_generalises_through_the_svd():
    """AvgPool, noiseless: the end state's block means are alpha_eps y + sigma_eps z / 2."""
    sde, op = VPSDE(), AvgPool(2)
    prior = GaussianMixture([0.5, 0.5], [[0.0] * 4, [1.0] * 4], stds=[0.5, 0.5], dtype=F64)
    y = torch.tensor([0.3, -0.2], dtype=F64)
    res = Replacement().sample(sde, prior.score_fn(sde), op, y, (500, 4), solver=EulerMaruyama(),
                               steps=20, generator=torch.Generator().manual_seed(0), dtype=F64)  # fmt: skip
    alpha, sigma = sde.marginal(torch.tensor([sde.eps], dtype=F64))
    resid = (op.A(res.x) - alpha * y) / (sigma / 2**0.5)  # s = 1/sqrt(2): noise sigma s
    assert abs(float(resid.mean())) < 0.15 and abs(float(resid.std()) - 1) < 0.1


def test_per_sample_observations():
    sde, op = VPSDE(), Mask([True, False])
    y = torch.tensor([[0.2], [2.0], [-1.0]], dtype=F64)
    res = Replacement().sample(sde, PRIOR.score_fn(sde), op, y, (3, 2), solver=EulerMaruyama(),
                               steps=10, generator=torch.Generator().manual_seed(0), dtype=F64)  # fmt: skip
    alpha, sigma = sde.marginal(torch.tensor([sde.eps], dtype=F64))
    assert (res.x[:, 0] - alpha * y[:, 0]).abs().max() < 6 * sigma


# ---------------------------------------------------------------------- every solver
def _solver(path):
    return instantiate(yaml.safe_load(Path(path).read_text()))


METHODS = [Replacement(), RePaint(3, 2), DPS(), PiGDM()]


@pytest.mark.parametrize("path", SOLVER_CONFIGS, ids=lambda p: Path(p).stem)
@pytest.mark.parametrize("method", METHODS, ids=lambda m: type(m).__name__)
def test_method_runs_on_every_solver_it_claims(method, path):
    """Score transforms run on every solver, replacement and RePaint on every fixed-step one
    (adaptive ones are refused in one line); all on float32 and a noisy mask."""
    solver, sde = _solver(path), VPSDE()
    op = Mask([True, False], sigma_y=0.1)
    kw = dict(solver=solver, steps=12, generator=torch.Generator().manual_seed(0))
    if method.supports == "fixed" and solver.adaptive:
        with pytest.raises(ValueError, match="adaptive"):
            method.sample(sde, PRIOR.score_fn(sde), op, Y, (32, 2), **kw)
        return
    res = method.sample(sde, PRIOR.score_fn(sde), op, Y, (32, 2), **kw)
    assert res.x.shape == (32, 2) and res.x.dtype == torch.float32
    assert torch.isfinite(res.x).all() and res.nfe > 0


def test_smc_runs_on_images_and_float32():
    sde, op = VPSDE(), Mask(make_mask("left", (1, 4, 4)), sigma_y=0.05)
    prior = GaussianMixture([0.5, 0.5], torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)]),
                            stds=[0.3, 0.3])  # fmt: skip
    y = op.A(torch.ones(1, 1, 4, 4))
    res = SMC(4).sample(sde, prior.score_fn(sde), op, y, (8, 1, 4, 4), steps=20)
    assert res.x.shape == (8, 1, 4, 4) and res.x.dtype == torch.float32
    assert (res.x.mean() - 1).abs() < 0.2  # the observed half is all ones: the ones mode


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: DPS(scale=-1.0), "DPS scale must be a finite number > 0"),
        (lambda: DPS(sigma=float("nan")), "DPS sigma"),
        (lambda: PiGDM(prior_var=0), "PiGDM prior_var must be a finite number > 0"),
        (lambda: RePaint(jump=0), "RePaint jump must be an integer >= 1"),
        (lambda: RePaint(resample=2.5), "RePaint resample must be an integer"),
        (lambda: SMC(particles=0), "SMC particles must be an integer >= 1"),
        (lambda: SMC(ess=1.5), r"SMC ess must lie in \[0, 1\]"),
        (lambda: SMC(variance="forward"), "SMC variance must be midpoint or posterior"),
        (lambda: SMC(twist="dps"), "SMC twist must be tweedie or flat"),
    ],
)
def test_invalid_parameters(make, words):
    with pytest.raises(ValueError, match=words) as err:
        make()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("method", "kw", "y", "words"),
    [
        (Replacement(), {"solver": EulerMaruyama()}, [0.1, 0.2], r"y must have shape \(1,\)"),
        (PiGDM(), {"solver": EulerMaruyama()}, torch.zeros(5, 1), r"or \(4, \*\(1,\)\)"),
        (SMC(2), {}, [[0.1, 0.2]], r"y must have shape \(1,\)"),
        (Replacement(), {"solver": Dopri5()}, [0.1], "fixed-step solver"),
        (Replacement(), {}, [0.1], "give a fixed-step solver"),
        (DPS(), {"solver": EulerMaruyama()}, [0.1], "give DPS\\(sigma=...\\)"),
        (SMC(2), {"solver": EulerMaruyama()}, [0.1], "solver=None"),
        (PiGDM(), {"solver": EulerMaruyama()}, [float("inf")], "y must be finite"),
    ],
)
def test_bad_input_is_one_clear_line(method, kw, y, words):
    sde = VPSDE()
    with pytest.raises(ValueError, match=words) as err:
        method.sample(sde, PRIOR.score_fn(sde), Mask([True, False]), torch.as_tensor(y),
                      (4, 2), steps=5, **kw)  # fmt: skip
    assert "\n" not in str(err.value)


def test_observation_outside_the_range_of_a_noiseless_operator():
    """Rank 1 of 2 observed values: y = (1, -1) is no A x; with sigma_y > 0 it is allowed."""
    from sde_diffusion.inverse import ChannelMix

    sde, y = VPSDE(), torch.tensor([1.0, -1.0])
    kw = dict(solver=EulerMaruyama(), steps=5)
    with pytest.raises(ValueError, match="y is outside the range of the noiseless operator"):
        Replacement().sample(sde, PRIOR.score_fn(sde), ChannelMix([[1.0, 1.0], [1.0, 1.0]]), y,
                             (4, 2), **kw)  # fmt: skip
    op = ChannelMix([[1.0, 1.0], [1.0, 1.0]], sigma_y=0.1)
    assert Replacement().sample(sde, PRIOR.score_fn(sde), op, y, (4, 2), **kw).x.shape == (4, 2)


def test_mask_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"mask has shape \(3,\) but the events have shape \(2,\)"):
        Replacement().sample(VPSDE(), PRIOR.score_fn(VPSDE()), Mask([1, 0, 1]), [0.1, 0.2],
                             (4, 2), solver=EulerMaruyama(), steps=5)  # fmt: skip
