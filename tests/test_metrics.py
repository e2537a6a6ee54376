"""Sample-quality metrics: closed forms, exactness, noise floors and power against a shifted mixture."""

import importlib
import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, multivariate_normal, wasserstein_distance

from sde_diffusion import datasets
from sde_diffusion.metrics.floor import noise_floor
from sde_diffusion.metrics.mmd import mmd
from sde_diffusion.metrics.sliced_wasserstein import sliced_wasserstein
from sde_diffusion.metrics.total_variation import (
    _edges,
    bin_masses,
    total_variation,
    tv_noise_floor,
    tv_to_mixture,
)
from sde_diffusion.mixture import GaussianMixture

F64 = torch.float64


def shifted(m: GaussianMixture, by: float) -> GaussianMixture:
    if m.kind == "full":
        return GaussianMixture(m.weights, m.means + by, covs=m.covs, dtype=F64)
    return GaussianMixture(m.weights, m.means + by, stds=m.stds, dtype=F64)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ sliced Wasserstein
def test_sw_closed_forms():
    """W_2 of a shifted copy is the shift: 1-D |mu| exactly (every direction is +-1); in D dims
    SW_2 = |mu| / sqrt(D) up to the Monte Carlo error of E cos^2 over 4096 directions (< 2 %).
    Independent N(0,1) vs N(1,1) sets at n = 20 000: |SW - 1| < 0.02 (floor ~0.01)."""
    x = torch.randn(5000, 1, generator=gen(0), dtype=F64)
    assert sliced_wasserstein(x, x + 0.7) == pytest.approx(0.7, rel=1e-12)
    x2 = torch.randn(5000, 2, generator=gen(1), dtype=F64)
    mu = torch.tensor([0.6, -0.8], dtype=F64)
    sw = sliced_wasserstein(x2, x2 + mu, n_projections=4096)
    assert sw == pytest.approx(1.0 / math.sqrt(2), rel=0.02)
    a = torch.randn(20_000, 1, generator=gen(2), dtype=F64)
    b = torch.randn(20_000, 1, generator=gen(3), dtype=F64) + 1.0
    assert abs(sliced_wasserstein(a, b) - 1.0) < 0.02


def test_sw_unequal_sizes_is_exact():
    """Unequal sizes: p = 1 equals scipy's exact 1-D W_1; p = 2 equals W_2 of both sets
    replicated to the common size lcm(N, M) (where sorted pairing is exact). 1e-12."""
    a = torch.randn(300, 1, generator=gen(0), dtype=F64)
    b = torch.randn(170, 1, generator=gen(1), dtype=F64) * 1.5 + 0.3
    assert sliced_wasserstein(a, b, p=1) == pytest.approx(
        wasserstein_distance(a[:, 0].numpy(), b[:, 0].numpy()), rel=1e-12
    )
    ar = torch.sort(a[:, 0]).values.repeat_interleave(17)
    br = torch.sort(b[:, 0]).values.repeat_interleave(30)
    assert sliced_wasserstein(a, b, p=2) == pytest.approx(
        float(((ar - br) ** 2).mean().sqrt()), rel=1e-12
    )
    assert sliced_wasserstein(a, b) == pytest.approx(sliced_wasserstein(b, a), rel=1e-12)


def test_sw_any_rank_and_deterministic():
    x = torch.randn(400, 1, 3, 3, generator=gen(0), dtype=F64)
    y = torch.randn(300, 1, 3, 3, generator=gen(1), dtype=F64) + 0.2
    v = sliced_wasserstein(x, y)
    assert v == sliced_wasserstein(x.reshape(400, 9), y.reshape(300, 9)) == sliced_wasserstein(x, y)
    assert v != sliced_wasserstein(x, y, generator=gen(5))
    with pytest.raises(ValueError, match="same event size"):
        sliced_wasserstein(x, y[:, :, :2])
    with pytest.raises(ValueError, match="p must be"):
        sliced_wasserstein(x, y, p=0.5)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, y, n_projections=0)


def test_sw_floor_and_power():
    """eight_gaussians, n = 5000: SW of independent exact sets lies within the floor
    (mean + 4 std over 5 repeats), a 0.3 shift is >> the floor (measured ratio ~ 5)."""
    m = datasets.eight_gaussians(dtype=F64)
    floor = noise_floor(sliced_wasserstein, m, 5000, repeats=5, generator=gen(0))
    x, y = m.sample(5000, gen(10)), m.sample(5000, gen(11))
    assert sliced_wasserstein(x, y) < floor.mean + 4 * floor.std
    assert sliced_wasserstein(x, shifted(m, 0.3).sample(5000, gen(12))) > 3 * floor.mean


# ------------------------------------------------------------------ MMD
def brute_mmd(x: torch.Tensor, y: torch.Tensor, h: list[float]) -> float:
    k = lambda a, b: sum(torch.exp(-(torch.cdist(a, b) ** 2) / (2 * s**2)) for s in h)  # noqa: E731
    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return float(
        (kxx.sum() - len(h) * n) / (n * (n - 1))
        + (kyy.sum() - len(h) * m) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )


def test_mmd_matches_brute_force_for_any_chunk_and_bandwidths():
    """Blockwise (chunk 37, 1000), the 4^j bandwidth ladder and arbitrary bandwidths all
    equal the dense O(n^2) formula to 1e-12 (absolute; values ~1e-2)."""
    x = torch.randn(300, 2, generator=gen(0), dtype=F64)
    y = torch.randn(250, 2, generator=gen(1), dtype=F64) * 1.2 + 0.1
    for h in ([0.25, 0.5, 1.0, 2.0, 4.0], [0.3, 1.7]):
        ref = brute_mmd(x, y, h)
        for chunk in (37, 1000):
            assert mmd(x, y, bandwidths=h, chunk_size=chunk) == pytest.approx(ref, abs=1e-12)
    assert mmd(x, y) == pytest.approx(mmd(y, x), abs=1e-12)
    assert mmd(x.reshape(300, 2, 1, 1), y.reshape(250, 1, 2)) == pytest.approx(mmd(x, y), abs=1e-14)


def test_mmd_is_unbiased_and_has_power():
    """Over 20 pairs of exact sets (n = 1000) the mean of MMD^2_u is 0 within 4 standard
    errors; a 0.3 shift of eight_gaussians gives MMD^2_u > 10 times the floor's std."""
    m = datasets.eight_gaussians(dtype=F64)
    floor = noise_floor(mmd, m, 1000, repeats=20, generator=gen(0))
    assert abs(floor.mean) < 4 * floor.std / math.sqrt(20)
    x, y = m.sample(1000, gen(1)), shifted(m, 0.3).sample(1000, gen(2))
    assert mmd(x, y) > 10 * floor.std
    with pytest.raises(ValueError, match="bandwidths"):
        mmd(x, y, bandwidths=[1.0, -1.0])
    with pytest.raises(ValueError, match=">= 2 samples"):
        mmd(x[:1], y)


# ------------------------------------------------------------------ total variation
def test_bin_masses_are_exact():
    """Axis-aligned masses: the full-covariance quadrature path on diagonal covariances agrees
    with the closed form (1e-13); correlated masses match scipy's bivariate CDF (1e-12; measured
    6e-17); grid mass + outside mass = 1 by construction and inside mass matches
    the rectangle probability."""
    u = datasets.unequal_mixture(dtype=F64)
    as_full = GaussianMixture(u.weights, u.means, covs=u.component_covs())
    edges = _edges(u, 40, None)
    torch.testing.assert_close(bin_masses(as_full, edges), bin_masses(u, edges), rtol=0, atol=1e-13)
    c = datasets.correlated_mixture(dtype=F64)
    edges = _edges(c, (12, 9), [(-3.0, 3.0), (-2.5, 2.0)])
    masses = bin_masses(c, edges)
    for i, j in [(2, 2), (4, 3), (6, 5), (9, 7), (5, 0)]:
        lo = [float(edges[0][i]), float(edges[1][j])]
        hi = [float(edges[0][i + 1]), float(edges[1][j + 1])]
        ref = sum(
            float(w)
            * multivariate_normal(mu.numpy(), cov.numpy(), abseps=1e-12, releps=1e-12).cdf(
                hi, lower_limit=lo
            )
            for w, mu, cov in zip(c.weights, c.means, c.covs, strict=True)
        )
        assert float(masses[i, j]) == pytest.approx(ref, abs=1e-12)
    whole = sum(
        float(w)
        * multivariate_normal(mu.numpy(), cov.numpy(), abseps=1e-12, releps=1e-12).cdf(
            [3.0, 2.0], lower_limit=[-3.0, -2.5]
        )
        for w, mu, cov in zip(c.weights, c.means, c.covs, strict=True)
    )
    assert float(masses.sum()) == pytest.approx(whole, abs=1e-12)


def test_full_covariance_quadrature_is_converged(monkeypatch):
    """16 Gauss-Legendre nodes per bin equal 64 nodes to 1e-15 even at correlation 0.99."""
    tv_module = importlib.import_module("sde_diffusion.metrics.total_variation")

    m = GaussianMixture([1.0], [[0.0, 0.0]], covs=[[[1.0, 0.99], [0.99, 1.0]]], dtype=F64)
    edges = _edges(m, None, None)
    coarse = bin_masses(m, edges)
    monkeypatch.setattr(tv_module, "_GAUSS_NODES", 64)
    torch.testing.assert_close(bin_masses(m, edges), coarse, rtol=0, atol=1e-15)


def test_tv_noise_floor_is_exact():
    """The De Moivre formula equals the binomial expectation summed by scipy (1e-12), tends to
    the normal value sqrt(2 p(1-p)/(pi n)) for large n p (1 %), and matches the mean TV of 4000
    simulated multinomial histograms within 4 standard errors."""
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.04, 0.01], dtype=F64)
    n = 40
    ks = np.arange(n + 1)
    exact = 0.5 * sum((binom.pmf(ks, n, q) * np.abs(ks / n - q)).sum() for q in p.tolist())
    assert tv_noise_floor(p, n) == pytest.approx(exact, rel=1e-12)
    big = 10**6
    normal = 0.5 * float((2 * p * (1 - p) / (math.pi * big)).sqrt().sum())
    assert tv_noise_floor(p, big) == pytest.approx(normal, rel=0.01)
    counts = torch.distributions.Multinomial(n, p).sample((4000,))
    tv = 0.5 * (counts / n - p).abs().sum(1)
    assert abs(float(tv.mean()) - tv_noise_floor(p, n)) < 4 * float(tv.std()) / math.sqrt(4000)
    with pytest.raises(ValueError, match="sum to 1"):
        tv_noise_floor(p[:3], n)


@pytest.mark.parametrize(
    "preset, band",
    [
        ("eight_gaussians", 0.2),
        ("unequal_mixture", 0.2),
        ("correlated_mixture", 0.2),
        ("bimodal_1d", 0.3),
    ],
)
def test_tv_of_exact_samples_is_at_the_floor(preset, band):
    """n = 20 000 exact samples: tv / floor in [1 - band, 1 + band]. The floor is the exact
    expectation; the ratio's spread over 200 draws measured 0.02 (2-D, 64 x 64 bins) and 0.09
    (1-D, 128 bins), so the band is > 3 standard deviations. A 0.5 shift: ratio > 5."""
    m = getattr(datasets, preset)(dtype=F64)
    res = tv_to_mixture(m.sample(20_000, gen(0)), m)
    assert 1 - band < res.ratio < 1 + band
    assert res.floor == pytest.approx(tv_noise_floor(_full_masses(m), 20_000))
    bad = tv_to_mixture(shifted(m, 0.5).sample(20_000, gen(1)), m)
    assert bad.ratio > 5 and bad.tv == total_variation(shifted(m, 0.5).sample(20_000, gen(1)), m)


def _full_masses(m: GaussianMixture) -> torch.Tensor:
    inside = bin_masses(m, _edges(m, None, None)).reshape(-1)
    return torch.cat([inside, (1 - inside.sum()).reshape(1)])


def test_tv_range_bins_and_outside_bin():
    """Samples far outside the grid land in the outside bin: TV = 1 - P(outside) exactly.
    Default range is mixture-derived: means +- 4 component stds."""
    m = datasets.bimodal_1d(dtype=F64)
    far = torch.full((100, 1), 50.0, dtype=F64)
    out_mass = float(1 - bin_masses(m, _edges(m, None, None)).sum())
    assert total_variation(far, m) == pytest.approx(1 - out_mass, abs=1e-15)
    e = _edges(m, None, None)
    assert (float(e[0][0]), float(e[0][-1]), e[0].numel()) == (-4.0, 4.0, 129)
    x = m.sample(3000, gen(0))
    assert total_variation(x, m, bins=50, range=(-5, 5)) == total_variation(
        x[:, 0], m, 50, [(-5, 5)]
    )
    with pytest.raises(ValueError, match="1-D or 2-D"):
        total_variation(torch.zeros(5, 3), GaussianMixture([1.0], [[0.0, 0.0, 0.0]], stds=[1.0]))
    with pytest.raises(ValueError, match="range"):
        total_variation(x, m, range=(1.0, -1.0))
    with pytest.raises(ValueError, match="bins"):
        total_variation(x, m, bins=(10, 10))
    with pytest.raises(ValueError, match="event size"):
        total_variation(torch.zeros(5, 2), m)


def test_noise_floor_validation():
    m = datasets.bimodal_1d()
    f = noise_floor(sliced_wasserstein, m, 100, repeats=3, generator=gen(0))
    assert len(f.values) == 3 and f.mean > 0 and f.std >= 0
    with pytest.raises(ValueError, match="repeats"):
        noise_floor(sliced_wasserstein, m, 100, repeats=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda_equal_cpu():
    m = datasets.unequal_mixture(dtype=F64)
    x, y = m.sample(3000, gen(0)), m.sample(2500, gen(1))
    xc, yc = x.cuda(), y.cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    assert sliced_wasserstein(xc, yc, generator=g) > 0
    assert sliced_wasserstein(xc[:, :1], yc[:, :1]) == pytest.approx(
        sliced_wasserstein(x[:, :1], y[:, :1])
    )
    assert mmd(xc, yc, chunk_size=1000) == pytest.approx(mmd(x, y), abs=1e-10)
    assert tv_to_mixture(xc, m) == tv_to_mixture(x, m)
