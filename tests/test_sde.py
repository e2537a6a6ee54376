"""Forward SDEs: closed-form marginals against simulation and against their own coefficients."""

import math

import pytest
import torch

from sde_diffusion.sde import VESDE, VPSDE, SubVPSDE


def test_marginal_obeys_the_moment_odes(sde):
    """For dx = f(t) x dt + g(t) dW: d log alpha/dt = f(t) and d sigma^2/dt = 2 f sigma^2 + g^2.

    This ties marginal() to drift() and diffusion() exactly (autograd, float64, rel. 1e-8),
    so a wrong g(t) or alpha(t) cannot pass.
    """
    t = torch.linspace(0.05, 1.0, 20, dtype=torch.float64, requires_grad=True)
    alpha, sigma = sde.marginal(t)
    dlog_alpha = torch.autograd.grad(alpha.log().sum() + 0 * t.sum(), t, retain_graph=True)[0]
    dvar = torch.autograd.grad((sigma**2).sum(), t)[0]
    td = t.detach()
    f = sde.drift(torch.ones(20, 1, dtype=torch.float64), td)[:, 0]  # f(t) * 1
    g2 = sde.diffusion(td) ** 2
    torch.testing.assert_close(dlog_alpha, f, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(dvar, 2 * f * sigma.detach() ** 2 + g2, rtol=1e-8, atol=1e-10)
    a0, s0 = sde.marginal(torch.zeros(1, dtype=torch.float64))
    assert float(a0) == pytest.approx(1.0) and float(s0) == pytest.approx(0.0, abs=1e-12)


def test_marginal_matches_monte_carlo_of_forward_sde(sde):
    """Simulate the forward SDE from x0 = 1.5 with 2000 Euler–Maruyama steps (n = 40000).

    Mean and std must match alpha x0 and sigma to 5 standard errors plus the O(dt)
    discretisation bias (measured < 0.3 % of the scale at this step count).
    """
    g = torch.Generator().manual_seed(0)
    n, steps, x0 = 40_000, 2000, 1.5
    times = torch.linspace(0, sde.T, steps + 1, dtype=torch.float64)
    x = torch.full((n, 1), x0, dtype=torch.float64)
    checks = {500: None, 1000: None, 2000: None}
    for i in range(steps):
        t = times[i].expand(n)
        dt = times[i + 1] - times[i]
        dw = torch.randn(n, 1, generator=g, dtype=torch.float64) * dt.sqrt()
        # midpoint diffusion keeps the O(dt) variance bias small for the fast-growing VE g(t)
        gm = sde.diffusion((times[i] + 0.5 * dt).expand(n))[:, None]
        x = x + sde.drift(x, t) * dt + gm * dw
        if i + 1 in checks:
            tt = times[i + 1 : i + 2]
            alpha, sigma = (v.item() for v in sde.marginal(tt))
            scale = max(sigma, 1e-3)
            se_mean = sigma / math.sqrt(n)
            se_std = sigma / math.sqrt(2 * n)
            assert abs(x.mean().item() - alpha * x0) < 5 * se_mean + 3e-3 * scale
            assert abs(x.std().item() - sigma) < 5 * se_std + 3e-3 * scale


def test_prior_matches_marginal_at_T(sde):
    """x_T from data N(1, 1) is N(alpha_T, alpha_T^2 + sigma_T^2); KL to the prior < 1e-3."""
    T = torch.tensor([sde.T], dtype=torch.float64)
    alpha, sigma = (v.item() for v in sde.marginal(T))
    mu, var = alpha, alpha**2 + sigma**2
    p2 = sde.prior_std**2
    kl = 0.5 * (var / p2 + mu**2 / p2 - 1 - math.log(var / p2))
    assert kl < 1e-3
    g = torch.Generator().manual_seed(1)
    z = sde.prior_sample((50_000, 2), generator=g, dtype=torch.float64)
    assert z.dtype == torch.float64 and z.shape == (50_000, 2)
    # 5 standard errors of the sample std and mean
    assert abs(z.std().item() / sde.prior_std - 1) < 5 / math.sqrt(2 * 100_000)
    assert abs(z.mean().item()) < 5 * sde.prior_std / math.sqrt(100_000)


def test_prior_log_prob_is_normal_density(sde):
    x = torch.randn(7, 3, 2, 2, dtype=torch.float64) * 3
    ref = torch.distributions.Normal(0.0, sde.prior_std).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(sde.prior_log_prob(x), ref)


def test_prior_sample_is_seeded(sde):
    a = sde.prior_sample((4, 3), generator=torch.Generator().manual_seed(5))
    b = sde.prior_sample((4, 3), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [(5, 2), (5, 1, 4, 4), (5, 3)])
def test_any_rank_and_dtype(sde, shape):
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(shape, dtype=dtype)
        t = torch.rand(shape[0], dtype=dtype)
        assert sde.drift(x, t).shape == x.shape and sde.drift(x, t).dtype == dtype
        assert sde.diffusion(t).shape == t.shape
        alpha, sigma = sde.marginal(t)
        assert alpha.shape == t.shape and sigma.shape == t.shape and alpha.dtype == dtype
        assert sde.prior_log_prob(x).shape == (shape[0],)


def test_reference_defaults():
    vp, subvp, ve = VPSDE(), SubVPSDE(), VESDE()
    assert (vp.beta_min, vp.beta_max, vp.eps, vp.T) == (0.1, 20.0, 1e-3, 1.0)
    assert (subvp.beta_min, subvp.beta_max, subvp.eps) == (0.1, 20.0, 1e-3)
    assert (ve.sigma_min, ve.sigma_max, ve.eps) == (0.01, 50.0, 1e-5)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: VPSDE(beta_min=-0.1), "beta_min"),
        (lambda: VPSDE(beta_min=5.0, beta_max=1.0), "beta_max"),
        (lambda: SubVPSDE(beta_max=0.0), "beta_max"),
        (lambda: VESDE(sigma_min=1.0, sigma_max=1.0), "sigma_min"),
        (lambda: VESDE(sigma_min=0.0), "sigma_min"),
        (lambda: VPSDE(eps=0.0), "eps"),
        (lambda: VPSDE(eps=1.0), "eps"),
        (lambda: VESDE(T=-1.0), "T"),
    ],
)
def test_invalid_parameters_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_prior_sample_refuses_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        VPSDE().prior_sample((0, 2))
