"""Exact high-dimensional measures against Gaussian mixtures, and the image-shaped presets.

Each measure must sit at its floor for exact samples and rise for a sampler with the bias it is
meant to see. "At its floor": over R independent exact sets the mean value lies within 4
standard errors (4 floor.std / sqrt(R)) of the floor's mean, a check that fails by chance with
probability ~1e-4 and is deterministic here (fixed seeds). "Rises": at least 3x the floor
(measured 3.4x to 52x for the biases below, at n = 2000).
"""

import math

import pytest
import torch

from sde_diffusion.datasets import DIGIT_MIXTURE_SHAPES, digit_mixture
from sde_diffusion.metrics import exact_floors, exact_measures, exact_report, posterior_statistics
from sde_diffusion.metrics.exact_measures import MEASURES
from sde_diffusion.metrics.total_variation import tv_noise_floor
from sde_diffusion.mixture import GaussianMixture
from sde_diffusion.sampling import sample
from sde_diffusion.sde import VPSDE
from solvers.euler_maruyama import EulerMaruyama

N = 2000


@pytest.fixture(scope="module")
def digits8():
    return digit_mixture((1, 8, 8), dtype=torch.float64)


@pytest.fixture(scope="module")
def floors8(digits8):
    return exact_floors(digits8, N, repeats=1000)


def ratios(x, mixture, floors, seed=100):
    gen = torch.Generator().manual_seed(seed)
    return exact_report(x, mixture, generator=gen, floors=floors).ratios


def assert_at_floor(mixture, floors, repeats=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    values = {name: [] for name in MEASURES}
    for _ in range(repeats):
        x = mixture.sample(N, gen, dtype=torch.float64)
        m = exact_measures(x, mixture, generator=gen)
        for name in MEASURES:
            values[name].append(getattr(m, name))
    for name in MEASURES:
        mean = sum(values[name]) / repeats
        floor = floors[name]
        assert abs(mean - floor.mean) < 4 * floor.std / math.sqrt(repeats), (name, mean, floor)


# ---------------------------------------------------------------- presets
@pytest.mark.parametrize("shape", DIGIT_MIXTURE_SHAPES)
@pytest.mark.parametrize("anisotropic", [False, True])
def test_digit_mixture_presets(shape, anisotropic):
    m = digit_mixture(shape, anisotropic=anisotropic)
    assert m.n_components == 10 and m.event_shape == shape and m.dim == math.prod(shape)
    assert torch.allclose(m.weights, torch.arange(1, 11, dtype=torch.float64) / 55)
    assert m.kind == ("diagonal" if anisotropic else "isotropic")
    stds = m.component_stds()
    iso = torch.arange(10, dtype=torch.float64) * 0.01 + 0.08
    assert torch.allclose(stds[:9], iso[:9, None].expand(9, m.dim))
    if anisotropic:
        assert 0.029 < float(stds[9].min()) and float(stds[9].max()) < 0.22
        assert float(stds[9].max()) / float(stds[9].min()) > 5  # clearly anisotropic
    else:
        assert torch.allclose(stds[9], torch.full((m.dim,), 0.17, dtype=torch.float64))
    assert -1 - 1e-12 <= float(m.means.min()) and float(m.means.max()) <= 1 + 1e-12
    if shape[0] == 3:  # channels replicate the grey digit
        assert torch.equal(m.means[:, 0], m.means[:, 2])


def test_digit_mixture_rejects_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        digit_mixture((8, 8))


# ---------------------------------------------------------------- floors
def test_mode_tv_floor_matches_the_exact_multinomial_value(digits8, floors8):
    exact = tv_noise_floor(digits8.weights, N)
    assert abs(floors8["mode_tv"].mean - exact) < 4 * floors8["mode_tv"].std / math.sqrt(1000)


def test_exact_samples_sit_at_the_floor(digits8, floors8):
    assert_at_floor(digits8, floors8)


def test_exact_samples_sit_at_the_floor_anisotropic():
    m = digit_mixture((1, 8, 8), anisotropic=True, dtype=torch.float64)
    assert_at_floor(m, exact_floors(m, N, repeats=1000), seed=1)


def test_exact_samples_sit_at_the_floor_full_covariance():
    covs = [[[0.05, 0.03, 0.0], [0.03, 0.04, 0.01], [0.0, 0.01, 0.02]], [[0.02, 0, 0], [0, 0.1, -0.05], [0, -0.05, 0.05]]]  # fmt: skip
    m = GaussianMixture([0.3, 0.7], [[0.0, 0.0, 0.0], [3.0, -2.0, 1.0]], covs=covs)
    assert_at_floor(m, exact_floors(m, N, repeats=1000), seed=2)


# ---------------------------------------------------------------- detection of biases
def test_shrunk_spread_is_seen_by_the_radius_and_log_density(digits8, floors8):
    x = digits8.sample(N, torch.Generator().manual_seed(3), dtype=torch.float64)
    k = posterior_statistics(x, digits8)[0]
    mu = digits8.means[k]
    r = ratios(mu + 0.95 * (x - mu), digits8, floors8)  # 5 % too narrow within every mode
    assert r["radius_ks"] > 5 and r["logp_ks"] > 3, r


def test_wrong_weights_are_seen_by_the_mode_histogram(digits8, floors8):
    uniform = GaussianMixture(torch.full((10,), 0.1), digits8.means, stds=digits8.stds)
    r = ratios(uniform.sample(N, torch.Generator().manual_seed(4)), digits8, floors8)
    assert r["mode_tv"] > 5 and r["logp_ks"] > 3, r


def test_a_shifted_mode_mean_is_seen_by_the_mean_error(digits8, floors8):
    x = digits8.sample(N, torch.Generator().manual_seed(5), dtype=torch.float64)
    k = posterior_statistics(x, digits8)[0]
    x[k == 9] += 0.2 * 0.17  # the heaviest mode moved by 0.2 std along every axis
    m = exact_measures(x, digits8)
    r = ratios(x, digits8, floors8)
    assert r["mean_error"] > 3 and abs(m.mean_errors[9] - 0.2) < 0.05, (r, m.mean_errors)
    assert r["radius_ks"] < 2  # a small shift hardly moves the radius law: the mean error sees it


def test_few_step_euler_maruyama_is_seen(digits8, floors8):
    sde = VPSDE()
    gen = torch.Generator().manual_seed(6)
    target = digits8.at(sde.eps, sde)
    res = sample(sde, digits8.score_fn(sde), EulerMaruyama(), (N, 1, 8, 8), steps=10,
                 generator=gen, dtype=torch.float64)  # fmt: skip
    r = ratios(res.x, target, floors8)
    assert min(r.values()) > 3, r


def test_residual_noise_at_eps_moves_the_radius_law_in_784_dimensions():
    """VP, eps = 1e-3 (sigma = 0.0105): exact data samples judged against p_eps are off."""
    m = digit_mixture((1, 28, 28), dtype=torch.float64)
    sde = VPSDE()
    target = m.at(sde.eps, sde)
    floors = exact_floors(m, N, repeats=500)
    x = m.sample(N, torch.Generator().manual_seed(7), dtype=torch.float64)
    assert ratios(x, m, floors)["radius_ks"] < 1.6  # against its own law: at the floor
    assert ratios(x, target, floors)["radius_ks"] > 2.5  # against p_eps: measured 3.2x


# ---------------------------------------------------------------- API
def test_report_and_bad_input(digits8):
    x = digits8.sample(50, torch.Generator().manual_seed(8))
    rep = exact_report(x, digits8)
    assert set(rep.ratios) == set(MEASURES) and rep.worst == max(rep.ratios.values())
    assert sum(rep.measures.mode_counts) == 50
    with pytest.raises(ValueError, match="shape"):
        exact_measures(x.reshape(50, 64), digits8)
    with pytest.raises(ValueError, match="finite"):
        exact_measures(torch.full_like(x, math.nan), digits8)
    with pytest.raises(ValueError, match="n must"):
        exact_floors(digits8, 0)
