"""Denoising score matching: the exact score is the minimiser, and importance sampling is unbiased.

All checks use a 2-D Gaussian mixture in float64 whose diffused score is exact, paired (common
random numbers: the same seed gives the same t and z), with tolerances of 4 standard errors
of the Monte-Carlo estimate (a false alarm every ~16 000 runs, but the seeds are fixed).
"""

from __future__ import annotations

import math

import pytest
import torch

from sde_diffusion.datasets import unequal_mixture
from sde_diffusion.losses import DSMLoss
from sde_diffusion.models import MLP
from sde_diffusion.parametrisation import ScoreModel

from .conftest import SDE_CONFIGS, make_sde

N = 40_000


def exact_model(mixture, sde, delta=None, rel=0.0):
    def model(x, t):
        s = mixture.score(x, t, sde)
        return s * (1 + rel) + (0 if delta is None else delta)

    return model


def paired(loss, model_a, model_b, x0, seed=0):
    a = loss.per_sample(model_a, x0, torch.Generator().manual_seed(seed))
    b = loss.per_sample(model_b, x0, torch.Generator().manual_seed(seed))
    return a, b


def mean_over_t(loss, fn, points=200_001):
    """(1 / (T - eps)) int_eps^T fn(t) dt by the trapezoidal rule on a log grid (fine enough
    that its error, < 1e-6 relative, is far below the Monte-Carlo error)."""
    u = torch.linspace(math.log(loss.eps), math.log(loss.T), points, dtype=torch.float64)
    t = u.exp()
    return float(torch.trapezoid(fn(t) * t, u)) / (loss.T - loss.eps)


@pytest.mark.parametrize("sde_name", SDE_CONFIGS)
@pytest.mark.parametrize("weighting", ["sigma2", "likelihood"])
def test_exact_score_minimises_the_loss(sde_name, weighting):
    """L(s* + delta) - L(s*) = E_t lambda(t) |delta|^2 / D: the cross term has mean zero only
    because E[s*(x_t) + z / sigma | x_t] = 0, i.e. only for the exact score (Vincent, 2011)."""
    sde = make_sde(sde_name)
    mixture = unequal_mixture(dtype=torch.float64)
    x0 = mixture.sample(N, torch.Generator().manual_seed(1))
    loss = DSMLoss(sde, weighting=weighting, eps=1e-3)
    exact = exact_model(mixture, sde)
    delta = torch.tensor([0.3, -0.2], dtype=torch.float64)
    base, shifted = paired(loss, exact, exact_model(mixture, sde, delta=delta), x0)
    diff = shifted - base
    lam = (
        (lambda t: sde.marginal(t)[1] ** 2)
        if weighting == "sigma2"
        else (lambda t: sde.diffusion(t) ** 2)
    )
    expected = mean_over_t(loss, lam) * float(delta.square().mean())
    se = float(diff.std()) / math.sqrt(N)
    assert abs(float(diff.mean()) - expected) < 4 * se, (float(diff.mean()), expected, se)
    assert float(diff.mean()) > 0
    # a score 10% too large or too small is worse too
    for rel in (-0.1, 0.1):
        _, scaled = paired(loss, exact, exact_model(mixture, sde, rel=rel), x0)
        gap = scaled - base
        assert float(gap.mean()) > 4 * float(gap.std()) / math.sqrt(N)


@pytest.mark.parametrize("sde_name", SDE_CONFIGS)
def test_importance_sampling_is_unbiased_and_reduces_variance(sde_name):
    """Uniform t with lambda = g^2 and t ~ q ∝ g^2/sigma^2 estimate the same objective."""
    sde = make_sde(sde_name)
    mixture = unequal_mixture(dtype=torch.float64)
    x0 = mixture.sample(N, torch.Generator().manual_seed(2))
    model = exact_model(mixture, sde)
    uniform = DSMLoss(sde, "likelihood", importance_sampling=False, eps=1e-3)
    importance = DSMLoss(sde, "likelihood", importance_sampling=True, eps=1e-3)
    a = uniform.per_sample(model, x0, torch.Generator().manual_seed(3))
    b = importance.per_sample(model, x0, torch.Generator().manual_seed(4))
    se = math.sqrt((a.var() / N + b.var() / N).item())
    assert abs(float(a.mean() - b.mean())) < 4 * se, (float(a.mean()), float(b.mean()), se)
    assert b.var() < a.var() / 4  # measured at eps = 1e-3: 15x (VP), 21x (sub-VP), 7x (VE) smaller


def test_importance_sampler_matches_its_density():
    """VE: g^2 / sigma^2 = 2 L e^{2tL} / (e^{2tL} - 1), L = log(sigma_max / sigma_min), so the
    normaliser is Z = [log(e^{2tL} - 1)]_eps^T and the CDF is known: a KS test on the sampled t."""
    sde = make_sde("ve")
    loss = DSMLoss(sde, "likelihood", importance_sampling=True, eps=1e-5)
    L = math.log(sde.sigma_max / sde.sigma_min)

    def log_expm1(t):
        return torch.log(torch.expm1(2 * t * L))

    eps = torch.tensor(loss.eps, dtype=torch.float64)
    Z = float(log_expm1(torch.tensor(1.0, dtype=torch.float64)) - log_expm1(eps))
    assert abs(loss.normaliser - Z) < 1e-6 * Z  # trapezoid on 8193 log-spaced points
    n = 100_000
    t, w = loss.sample_time(n, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert float(t.min()) >= loss.eps and float(t.max()) <= loss.T
    cdf = (log_expm1(t.sort().values) - log_expm1(eps)) / Z
    grid = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = float(torch.maximum((grid - cdf).abs(), (grid - 1 / n - cdf).abs()).max())
    assert ks < 1.63 / math.sqrt(n)  # the 1% critical value of the KS statistic
    # E_q[w / lambda] = 1 for weights matching the sampler's density (4 standard errors)
    r = w / sde.diffusion(t) ** 2
    assert abs(float(r.mean()) - 1) < 4 * float(r.std()) / math.sqrt(n)


def test_reductions_and_gradients():
    sde = make_sde("vp")
    torch.manual_seed(0)
    x0 = torch.randn(64, 2)
    model = ScoreModel(MLP(2, hidden=16, depth=1, embed_dim=8), sde, "eps")
    mean = DSMLoss(sde, reduction="mean")(model, x0, torch.Generator().manual_seed(0))
    total = DSMLoss(sde, reduction="sum")(model, x0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(total, 2 * mean)  # D = 2
    assert mean.ndim == 0 and mean.dtype == torch.float32
    mean.backward()
    assert all(p.grad is not None for p in model.parameters())
    images = torch.randn(4, 1, 8, 8)
    out = DSMLoss(sde, "likelihood", importance_sampling=True)(lambda x, t: -x, images)
    assert torch.isfinite(out)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(weighting="snr"), "weighting must be one of"),
        (dict(reduction="median"), "reduction must be one of"),
        (dict(eps=0.0), "eps must lie in"),
        (dict(eps=1.0), "eps must lie in"),
        (dict(importance_sampling=True), "weighting='likelihood'"),
    ],
)
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        DSMLoss(make_sde("vp"), **kw)
