"""Gaussian mixtures: exact diffused scores, densities, marginals, moments and validation."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import multivariate_normal

from sde_diffusion import datasets
from sde_diffusion import mixture as mixture_module
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.mixture import GaussianMixture
from sde_diffusion.sde import VESDE, VPSDE, SubVPSDE

F64 = torch.float64


def random_mixture(kind: str, event_shape: tuple[int, ...], K: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(K, generator=g, dtype=F64) + 0.2
    means = 2 * torch.randn(K, *event_shape, generator=g, dtype=F64)
    if kind == "isotropic":
        return GaussianMixture(w / w.sum(), means, stds=0.2 + torch.rand(K, generator=g, dtype=F64))
    if kind == "diagonal":
        stds = 0.2 + torch.rand(K, *event_shape, generator=g, dtype=F64)
        return GaussianMixture(w / w.sum(), means, stds=stds)
    D = math.prod(event_shape)
    a = torch.randn(K, D, D, generator=g, dtype=F64)
    covs = a @ a.transpose(1, 2) / D + 0.1 * torch.eye(D, dtype=F64)
    return GaussianMixture(w / w.sum(), means, covs=covs)


CASES = [
    ("isotropic", (2,)),
    ("diagonal", (2,)),
    ("full", (2,)),
    ("full", (4,)),
    ("isotropic", (1, 3, 3)),
    ("diagonal", (1, 3, 3)),
]


def noised_points(m: GaussianMixture, sde, n: int, seed: int):
    """x_t = alpha x_0 + sigma z at per-sample times in [eps, T], plus a few far-out points."""
    g = torch.Generator().manual_seed(seed)
    t = sde.eps + (sde.T - sde.eps) * torch.rand(n, generator=g, dtype=F64)
    alpha, sigma = sde.marginal(t)
    x0 = m.sample(n, g, dtype=F64)
    shape = (n,) + (1,) * len(m.event_shape)
    x = alpha.reshape(shape) * x0 + sigma.reshape(shape) * torch.randn(
        x0.shape, generator=g, dtype=F64
    )
    x[:3] = x[:3] + 30.0  # far from every mode: the responsibilities must not underflow
    return x, t


@pytest.mark.parametrize("kind, event_shape", CASES)
def test_score_is_gradient_of_marginal_log_prob(sde, kind, event_shape):
    """score(x, t) == grad_x marginal_log_prob(x, t) by autograd, per-sample t, float64.

    Both are evaluated at noised samples and at far-out points; agreement to 1e-9 relative
    (round-off of the softmax and the eigenbasis rotation is ~1e-13).
    """
    m = random_mixture(kind, event_shape)
    x, t = noised_points(m, sde, 64, seed=1)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(m.marginal_log_prob(x, t, sde).sum(), x)
    score = m.score(x.detach(), t, sde)
    assert score.shape == x.shape and score.dtype == F64
    torch.testing.assert_close(score, grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind, event_shape", CASES[:4])
def test_marginal_log_prob_equals_log_prob_of_at(sde, kind, event_shape):
    """log p_t from the per-sample path == at(t, sde).log_prob for a scalar t (1e-10)."""
    m = random_mixture(kind, event_shape)
    x, _ = noised_points(m, sde, 32, seed=2)
    for t in (sde.eps, 0.1, 0.5, sde.T):
        ref = m.at(t, sde).log_prob(x)
        torch.testing.assert_close(m.marginal_log_prob(x, t, sde), ref, rtol=1e-10, atol=1e-10)
        t_vec = torch.full((x.shape[0],), t, dtype=F64)
        torch.testing.assert_close(m.score(x, t_vec, sde), m.score(x, t, sde), rtol=0, atol=0)


def test_score_is_stable_far_away_and_in_float32():
    """Far from all modes the score is that of the nearest component; no NaN in float32."""
    m = datasets.eight_gaussians(dtype=F64)
    sde = VESDE()
    x = torch.tensor([[1e3, 0.0], [0.0, -500.0]], dtype=F64)
    t = torch.full((2,), sde.eps, dtype=F64)
    alpha, sigma = sde.marginal(t)
    var = alpha[0] ** 2 * 0.2**2 + sigma[0] ** 2
    nearest = m.means[[0, 6]]  # angles 0 and 3 pi / 2
    torch.testing.assert_close(
        m.score(x, t, sde), -(x - alpha[0] * nearest) / var, rtol=1e-12, atol=0
    )
    s32 = m.score(x.float(), t.float(), sde)
    assert s32.dtype == torch.float32 and torch.isfinite(s32).all()
    x32 = m.sample(500, torch.Generator().manual_seed(0), dtype=torch.float32)
    s32 = m.score(x32, 0.3, VPSDE())
    s64 = m.score(x32.double(), 0.3, VPSDE())
    torch.testing.assert_close(s32.double(), s64, rtol=1e-4, atol=1e-4)  # float32 round-off


def test_chunked_evaluation_matches(monkeypatch):
    """The batch is cut into chunks to bound memory; results must not depend on it."""
    m = random_mixture("diagonal", (1, 3, 3))
    x, t = noised_points(m, VPSDE(), 50, seed=3)
    full = m.score(x, t, VPSDE()), m.marginal_log_prob(x, t, VPSDE())
    monkeypatch.setattr(mixture_module, "_CHUNK_ELEMENTS", 7 * 3 * 9)
    torch.testing.assert_close(m.score(x, t, VPSDE()), full[0], rtol=0, atol=0)
    torch.testing.assert_close(m.marginal_log_prob(x, t, VPSDE()), full[1], rtol=0, atol=0)


def test_log_prob_integrates_to_one():
    """1-D: adaptive quadrature (|1 - int| < 1e-8). 2-D: midpoint rule on a 0.01 grid (< 1e-6)."""
    for m in (datasets.bimodal_1d(weights=(0.3, 0.7)), random_mixture("diagonal", (1,), K=4)):
        f = lambda v, m=m: float(m.log_prob(torch.tensor([[v]], dtype=F64)).exp())  # noqa: E731
        total = sum(integrate.quad(f, a, b, limit=200)[0] for a, b in [(-30, 0), (0, 30)])
        assert abs(total - 1) < 1e-8
    for m in (datasets.unequal_mixture(), datasets.correlated_mixture()):
        h = 0.01
        c = torch.arange(-6 + h / 2, 6, h, dtype=F64)
        xx, yy = torch.meshgrid(c, c, indexing="ij")
        pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
        assert abs(float(m.log_prob(pts).exp().sum()) * h * h - 1) < 1e-6


def test_full_covariance_log_prob_matches_scipy():
    m = random_mixture("full", (3,), K=4, seed=5)
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * 2
    ref = sum(
        float(w) * multivariate_normal(mu.numpy(), c.numpy()).pdf(x.numpy())
        for w, mu, c in zip(m.weights, m.means, m.covs, strict=True)
    )
    np.testing.assert_allclose(m.log_prob(x).numpy(), np.log(ref), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
@pytest.mark.parametrize("preset", ["unequal_mixture", "correlated_mixture"])
def test_at_matches_forward_noised_samples(sde, preset):
    """Forward-noised data x_t = alpha x_0 + sigma z against the exact marginal at(t, sde).

    Exact moments of at(t): mean alpha m, covariance alpha^2 C + sigma^2 I (1e-12). Empirical
    moments of 200 000 noised samples within 5 standard errors; and the 2-D histogram TV to the
    exact bin masses of at(t) within [0.8, 1.2] of its noise floor (measured spread ~0.02).
    """
    m = getattr(datasets, preset)(dtype=F64)
    g = torch.Generator().manual_seed(7)
    n, t = 200_000, 0.05
    mt = m.at(t, sde)
    alpha, sigma = (float(v) for v in sde.marginal(torch.tensor([t], dtype=F64)))
    torch.testing.assert_close(mt.mean(), alpha * m.mean(), rtol=1e-12, atol=1e-12)
    cov = alpha**2 * m.covariance() + sigma**2 * torch.eye(2, dtype=F64)
    torch.testing.assert_close(mt.covariance(), cov, rtol=1e-12, atol=1e-12)
    xt = alpha * m.sample(n, g) + sigma * torch.randn(n, 2, generator=g, dtype=F64)
    se_mean = (torch.diagonal(cov) / n).sqrt()
    assert ((xt.mean(0) - mt.mean()).abs() < 5 * se_mean).all()
    c = xt - xt.mean(0)
    prods = c[:, :, None] * c[:, None, :]
    se_cov = prods.std(0) / math.sqrt(n)
    assert ((prods.mean(0) - cov).abs() < 5 * se_cov).all()
    assert 0.8 < tv_to_mixture(xt, mt).ratio < 1.2


def test_marginal_at_zero_is_the_data(sde):
    for m in (datasets.unequal_mixture(dtype=F64), datasets.correlated_mixture(dtype=F64)):
        m0 = m.at(0.0, sde)
        torch.testing.assert_close(m0.means, m.means, rtol=0, atol=1e-15)
        torch.testing.assert_close(m0.component_covs(), m.component_covs(), rtol=1e-15, atol=1e-15)
        x = m.sample(10, torch.Generator().manual_seed(0))
        torch.testing.assert_close(
            m.marginal_log_prob(x, 0.0, sde), m.log_prob(x), rtol=1e-14, atol=1e-14
        )
    assert m0.kind == "full" and datasets.unequal_mixture().at(0.5, sde).kind == "diagonal"


@pytest.mark.parametrize(
    "kind, event_shape", [("diagonal", (2,)), ("full", (3,)), ("isotropic", (1, 2, 2))]
)
def test_sample_moments_match_mean_and_covariance(kind, event_shape):
    """Sample mean and covariance of 200 000 draws within 5 standard errors of mean()/covariance()."""
    m = random_mixture(kind, event_shape, seed=11)
    n = 200_000
    x = m.sample(n, torch.Generator().manual_seed(3), dtype=F64)
    assert x.shape == (n, *event_shape) and x.dtype == F64
    xf = x.reshape(n, -1)
    cov = m.covariance()
    se = (torch.diagonal(cov) / n).sqrt()
    assert ((xf.mean(0) - m.mean().reshape(-1)).abs() < 5 * se).all()
    c = xf - xf.mean(0)
    prods = c[:, :, None] * c[:, None, :]
    assert ((prods.mean(0) - cov).abs() < 5 * prods.std(0) / math.sqrt(n)).all()


def test_sampling_is_seeded_and_typed():
    m = datasets.grid_mixture(n=3)
    a = m.sample(100, torch.Generator().manual_seed(4))
    b = m.sample(100, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.dtype == torch.get_default_dtype()
    assert GaussianMixture([1.0], torch.zeros(1, 2, dtype=F64), stds=[1.0]).sample(3).dtype == F64


def test_inputs_from_lists_numpy_and_hydra():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "_target_": "sde_diffusion.mixture.GaussianMixture",
            "weights": [0.5, 0.5],
            "means": [[-2.0, 0.0], [2.0, 0.0]],
            "stds": [0.5, 0.5],
        }
    )
    m = instantiate(cfg)
    m2 = GaussianMixture(np.array([0.5, 0.5]), np.array([[-2.0, 0.0], [2.0, 0.0]]), stds=(0.5, 0.5))
    assert m.kind == "isotropic" and m.event_shape == (2,) and m.dim == 2
    torch.testing.assert_close(m.covariance(), m2.covariance())


def test_presets():
    e = datasets.eight_gaussians(radius=3.0, std=0.1, dtype=F64)
    torch.testing.assert_close(e.means.norm(dim=1), torch.full((8,), 3.0, dtype=F64))
    assert datasets.grid_mixture(n=4).n_components == 16
    assert datasets.grid_mixture(n=5, checkerboard=True).n_components == 13
    assert datasets.bimodal_1d().event_shape == (1,)
    u = datasets.unequal_mixture()
    assert u.kind == "diagonal" and len(set(u.weights.tolist())) == 3
    assert datasets.correlated_mixture().kind == "full"
    with pytest.raises(ValueError, match="std"):
        datasets.eight_gaussians(std=0.0)
    with pytest.raises(ValueError, match="n must"):
        datasets.grid_mixture(n=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weights=[0.5, 0.6], means=[[0.0], [1.0]], stds=[1.0, 1.0]), "weights must sum to 1"),
        (
            dict(weights=[1.5, -0.5], means=[[0.0], [1.0]], stds=[1.0, 1.0]),
            "weights must be non-negative",
        ),
        (dict(weights=[[1.0]], means=[[0.0]], stds=[1.0]), r"weights must have shape \(K,\)"),
        (dict(weights=[0.5, 0.5], means=[[0.0]], stds=[1.0]), "means must have shape"),
        (dict(weights=[1.0], means=[0.0], stds=[1.0]), "means must have shape"),
        (dict(weights=[1.0], means=[[0.0, 1.0]]), "exactly one of stds"),
        (dict(weights=[1.0], means=[[0.0, 1.0]], stds=[1.0], covs=[np.eye(2)]), "exactly one"),
        (dict(weights=[1.0], means=[[0.0, 1.0]], stds=[0.0]), "stds must be > 0"),
        (dict(weights=[1.0], means=[[0.0, 1.0]], stds=[[1.0, 1.0, 1.0]]), "stds must have shape"),
        (dict(weights=[1.0], means=[[0.0, np.nan]], stds=[1.0]), "means must be finite"),
        (dict(weights=[1.0], means=[[0.0, 1.0]], covs=[np.eye(3)]), "covs must have shape"),
        (dict(weights=[1.0], means=[[[0.0, 1.0]]], covs=[np.eye(2)]), "covs must have shape"),
        (dict(weights=[1.0], means=[[0.0, 1.0]], covs=[[[1.0, 0.5], [0.4, 1.0]]]), "symmetric"),
        (
            dict(weights=[1.0], means=[[0.0, 1.0]], covs=[[[1.0, 2.0], [2.0, 1.0]]]),
            "positive definite",
        ),
        (dict(weights=[1.0], means=[["a", "b"]], stds=[1.0]), "means must be an array"),
    ],
)
def test_invalid_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


def test_invalid_calls_are_refused():
    m = datasets.eight_gaussians()
    with pytest.raises(ValueError, match="x must have shape"):
        m.score(torch.zeros(4, 3), 0.5, VPSDE())
    with pytest.raises(ValueError, match="t must be a scalar or of shape"):
        m.score(torch.zeros(4, 2), torch.full((3,), 0.5), VPSDE())
    with pytest.raises(ValueError, match="t must be a scalar time"):
        m.at(torch.tensor([0.1, 0.2]), VPSDE())
    with pytest.raises(ValueError, match="n must be"):
        m.sample(0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sample_score_and_log_prob():
    """Parameters move lazily to x's device and dtype; results equal the CPU ones (1e-10)."""
    m = random_mixture("full", (3,))
    x = m.sample(100, torch.Generator(device="cuda").manual_seed(0), dtype=F64)
    assert x.device.type == "cuda"
    t = torch.rand(100, device="cuda", dtype=F64)
    for sde in (VPSDE(), VESDE()):
        s = m.score(x, t, sde)
        assert s.device.type == "cuda" and s.dtype == F64
        torch.testing.assert_close(s.cpu(), m.score(x.cpu(), t.cpu(), sde), rtol=1e-10, atol=1e-10)
        lp = m.marginal_log_prob(x, t, sde).cpu()
        torch.testing.assert_close(
            lp, m.marginal_log_prob(x.cpu(), t.cpu(), sde), rtol=1e-10, atol=1e-10
        )
    assert m.score(x.float(), t.float(), VPSDE()).dtype == torch.float32
