"""Issue 15 foundation: operators, the exact mixture posterior, exact class oracles, guidance.

Known answers: brute-force importance weighting of prior samples, Gaussian conditioning by
hand, autograd of exact log-densities, Bayes' rule, and the TV floor of exact samples.
"""

import math

import pytest
import torch

from sde_diffusion import datasets
from sde_diffusion.guidance import (
    ExactClassifier,
    cfg_score,
    class_conditional,
    classifier_guided_score,
)
from sde_diffusion.inverse import (
    AvgPool,
    ChannelMix,
    Identity,
    Mask,
    Operator,
    event_score_fn,
    log_evidence,
    posterior,
)
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.mixture import GaussianMixture
from sde_diffusion.sampling import sample
from sde_diffusion.sde import VESDE, VPSDE
from solvers import EulerMaruyama

from .conftest import make_sde

F64 = torch.float64

# ---------------------------------------------------------------------- operators
OPERATORS = [
    (Identity(0.1), (5,)),
    (Identity(), (2, 4, 4)),
    (Mask(torch.arange(32).reshape(2, 4, 4) % 3 == 0), (2, 4, 4)),
    (Mask([1, 0, 1]), (3,)),
    (ChannelMix(channels=3), (3, 4, 4)),
    (ChannelMix([[1.0, 2.0, 0.5], [0.0, 1.0, 1.0]]), (3, 2, 2)),
    (ChannelMix([[1.0, 2.0, 3.0]]), (3,)),
    (AvgPool(2), (3, 4, 6)),
    (AvgPool(2), (8,)),
    (AvgPool(3), (1, 6, 3, 9)),
]
IDS = [f"{type(op).__name__}-{'x'.join(map(str, s))}" for op, s in OPERATORS]


@pytest.mark.parametrize(("op", "shape"), OPERATORS, ids=IDS)
def test_operator_adjoint_matrix_svd_and_pseudo_inverse(op, shape):
    """<A x, y> = <x, A^T y>; A = U diag(s) V^T with V orthogonal; A^+ = pinv(A); all 1e-12."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, *shape, generator=g, dtype=F64)
    y = torch.randn(4, *op.out_shape(shape), generator=g, dtype=F64)
    ax = op.A(x)
    assert tuple(ax.shape[1:]) == op.out_shape(shape)
    assert op.in_shape(op.out_shape(shape)) == shape
    torch.testing.assert_close((ax * y).sum(), (x * op.A_adjoint(y)).sum(), rtol=1e-12, atol=1e-12)
    mat = op.matrix(shape)
    torch.testing.assert_close(x.reshape(4, -1) @ mat.T, ax.reshape(4, -1), rtol=0, atol=1e-12)

    svd = op.svd(shape)
    z = svd.Vt(x)
    torch.testing.assert_close(svd.V(z), x, rtol=0, atol=1e-12)  # V V^T = I
    zz = torch.randn(4, z.shape[1], generator=g, dtype=F64)
    torch.testing.assert_close(svd.Vt(svd.V(zz)), zz, rtol=0, atol=1e-12)  # V^T V = I
    torch.testing.assert_close(svd.U(svd.singulars * z[:, : svd.rank]), ax, rtol=0, atol=1e-12)
    dense = torch.linalg.svdvals(mat)
    torch.testing.assert_close(svd.singulars.sort(descending=True).values, dense[: svd.rank])
    pinv = torch.linalg.pinv(mat)
    expected = (y.reshape(4, -1) @ pinv.T).reshape(4, *shape)
    torch.testing.assert_close(op.A_dagger(y), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(Operator.A_dagger(op, y), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.A(op.A_dagger(y)), y, rtol=0, atol=1e-12)  # full row rank


def test_observe_adds_noise_of_the_stated_level():
    """y - A x has std sigma_y (n = 40 000: within 3%) and is exactly A x when sigma_y = 0."""
    x = torch.randn(10, 1, 4, 4, dtype=F64)
    assert torch.equal(AvgPool(2).observe(x), AvgPool(2).A(x))
    op = AvgPool(2, sigma_y=0.3)
    x = torch.randn(10_000, 1, 4, 4, dtype=F64)
    resid = op.observe(x, torch.Generator().manual_seed(1)) - op.A(x)
    assert abs(float(resid.std()) / 0.3 - 1) < 0.03


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Mask([1, 0, 1]).A(torch.zeros(2, 4)), r"mask has shape \(3,\)"),
        (lambda: Mask(torch.ones(4, 4)).A(torch.zeros(2, 1, 4, 4)), "mask has shape"),
        (lambda: Mask([0, 0]), "observes nothing"),
        (lambda: Mask([0, 2]), "only 0 and 1"),
        (lambda: AvgPool(3).A(torch.zeros(2, 1, 4, 4)), "factor 3 does not divide the size 4"),
        (lambda: AvgPool(0), "factor must be an integer"),
        (lambda: Identity(-0.1), "sigma_y must be a finite number >= 0"),
        (lambda: Mask([1, 0], sigma_y="x"), "sigma_y must be a real number"),
        (lambda: ChannelMix(channels=3).A(torch.zeros(1, 2, 4, 4)), "3 input channels"),
        (lambda: ChannelMix([[1, 2]], channels=2), "exactly one"),
    ],
)
def test_bad_operator_inputs_give_one_line_errors(make, match):
    with pytest.raises(ValueError, match=match) as err:
        make()
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------- exact posterior
def prior_draws(m: GaussianMixture, n: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Exact prior draws with their component index."""
    k = torch.multinomial(m.weights, n, replacement=True, generator=g)
    chol = torch.linalg.cholesky(m.component_covs())
    z = torch.randn(n, m.dim, 1, generator=g, dtype=F64)
    return m.means.reshape(m.n_components, m.dim)[k] + (chol[k] @ z)[:, :, 0], k


CASES = {
    "1d-denoise": (lambda: datasets.bimodal_1d(dtype=F64), Identity(0.8), [0.6]),
    "2d-inpaint": (lambda: datasets.correlated_mixture(dtype=F64), Mask([1, 0], 0.3), [0.2]),
    "2d-mix": (
        lambda: datasets.unequal_mixture(dtype=F64),
        ChannelMix([[0.5, 0.5]], sigma_y=0.4),
        [0.1],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_posterior_matches_importance_weighted_prior_samples(case):
    """Self-normalised importance weighting of 400 000 prior draws by N(y; A x, sigma_y^2 I).

    Mean, covariance entries and component weights agree within 5 delta-method standard errors
    sqrt(sum_i w_i^2 (f_i - E f)^2) (SE ~1e-3 to 4e-3 here); log p(y) within 1%.
    """
    make, op, y = CASES[case]
    prior, y = make(), torch.tensor(y, dtype=F64)
    post = posterior(prior, op, y)
    x, k = prior_draws(prior, 400_000, torch.Generator().manual_seed(11))
    log_lik = -0.5 * ((op.A(x) - y) ** 2).sum(1) / op.sigma_y**2
    w = torch.softmax(log_lik, 0)
    M = y.numel()
    evidence = torch.logsumexp(log_lik, 0) - math.log(x.shape[0])
    evidence = evidence - 0.5 * M * math.log(2 * math.pi * op.sigma_y**2)
    assert abs(log_evidence(prior, op, y) - float(evidence)) < 0.01

    def check(f: torch.Tensor, exact: torch.Tensor) -> None:
        est = (w[:, None] * f).sum(0)
        se = ((w[:, None] ** 2) * (f - est) ** 2).sum(0).sqrt()
        assert ((est - exact).abs() < 5 * se + 1e-12).all(), (case, est, exact, se)

    mean = post.mean()
    check(x, mean)
    c = x - mean
    check((c[:, :, None] * c[:, None, :]).reshape(x.shape[0], -1), post.covariance().reshape(-1))
    check(torch.nn.functional.one_hot(k, prior.n_components).to(F64), post.weights)


def test_noiseless_masking_is_gaussian_conditioning():
    """sigma_y = 0: each component conditioned by the Schur complement (1e-10); samples hit y."""
    prior, y = datasets.correlated_mixture(dtype=F64), torch.tensor([0.7], dtype=F64)
    post = posterior(prior, Mask([True, False]), y)
    S, mu = prior.component_covs(), prior.means
    cond_mean = mu[:, 1] + S[:, 1, 0] / S[:, 0, 0] * (0.7 - mu[:, 0])
    cond_var = S[:, 1, 1] - S[:, 1, 0] ** 2 / S[:, 0, 0]
    lik = prior.weights * torch.exp(-0.5 * (0.7 - mu[:, 0]) ** 2 / S[:, 0, 0]) / S[:, 0, 0].sqrt()
    torch.testing.assert_close(post.weights, lik / lik.sum(), rtol=1e-10, atol=0)
    torch.testing.assert_close(post.means[:, 1], cond_mean, rtol=1e-10, atol=0)
    torch.testing.assert_close(post.covs[:, 1, 1], cond_var, rtol=1e-10, atol=0)
    torch.testing.assert_close(post.means[:, 0], torch.full((2,), 0.7, dtype=F64))
    xs = post.sample(1000, torch.Generator().manual_seed(0))
    assert (xs[:, 0] - 0.7).abs().max() < 1e-5


@pytest.mark.parametrize("sigma_y", [0.0, 0.2])
def test_image_prior_posterior_is_kind_agnostic(sigma_y):
    """An image prior (K, 1, 4, 4) with diagonal stds under 2x super-resolution, and its flat
    full-covariance twin under the same A as a dense matrix, give the same posterior (1e-10);
    noiseless, A mu'_k = y."""
    g = torch.Generator().manual_seed(3)
    means = torch.randn(3, 1, 4, 4, generator=g, dtype=F64)
    stds = 0.2 + torch.rand(3, 1, 4, 4, generator=g, dtype=F64)
    img = GaussianMixture([0.2, 0.3, 0.5], means, stds=stds)
    flat = GaussianMixture([0.2, 0.3, 0.5], means.reshape(3, 16), covs=img.component_covs())
    op = AvgPool(2, sigma_y=sigma_y)
    y = op.A(means[1:2]) + 0.05
    dense = ChannelMix(op.matrix((1, 4, 4)), sigma_y=sigma_y)  # the same A on flat events
    a, b = posterior(img, op, y), posterior(flat, dense, y.reshape(4))
    for name in ("weights", "means", "covs"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-10, atol=1e-12)
    if sigma_y == 0:
        torch.testing.assert_close(op.A(a.means.reshape(3, 1, 4, 4)), y.expand(3, 1, 2, 2))
    sde = VPSDE()
    x = torch.randn(5, 1, 4, 4, generator=g, dtype=F64)
    s = event_score_fn(a, sde, (1, 4, 4))(x, torch.full((5,), 0.3, dtype=F64))
    torch.testing.assert_close(s.reshape(5, 16), a.score(x.reshape(5, 16), 0.3, sde))


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
@pytest.mark.parametrize("sigma_y", [0.0, 0.3])
def test_noised_posterior_score_is_the_gradient_of_its_log_density(sde_name, sigma_y):
    """grad_x log p_t(x | y) by autograd equals the closed-form score at t in {0.05, 0.5} (1e-8)."""
    sde = make_sde(sde_name)
    post = posterior(datasets.unequal_mixture(dtype=F64), Mask([0, 1], sigma_y), [0.4])
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    for t in (0.05, 0.5):
        tt = torch.full((64,), t, dtype=F64)
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(post.marginal_log_prob(xg, tt, sde).sum(), xg)
        torch.testing.assert_close(post.score(x, tt, sde), grad, rtol=1e-8, atol=1e-8)


def test_sampling_the_exact_posterior_score_reaches_the_tv_floor():
    """Inpainting a 2-D mixture (x_2 observed, sigma_y = 0.3): Euler-Maruyama, 500 steps, on the
    exact posterior score; TV of a 24 x 24 histogram (n = 10 000) to p_eps(x | y) <= 1.3 x floor.
    """
    sde = VPSDE()
    post = posterior(datasets.unequal_mixture(dtype=F64), Mask([0, 1], 0.3), [0.2])
    res = sample(
        sde,
        post.score_fn(sde),
        EulerMaruyama(),
        (10_000, 2),
        steps=500,
        generator=torch.Generator().manual_seed(0),
        dtype=F64,
    )
    tv = tv_to_mixture(res.x, post.at(sde.eps, sde), bins=24)
    assert tv.ratio < 1.3, (tv.tv, tv.floor)


def test_posterior_bad_inputs():
    prior = datasets.correlated_mixture(dtype=F64)
    with pytest.raises(ValueError, match=r"y must be one observation of shape \(1,\)"):
        posterior(prior, Mask([1, 0]), torch.zeros(2))
    with pytest.raises(ValueError, match="full row rank"):
        posterior(prior, ChannelMix([[1.0, 1.0], [2.0, 2.0]]), torch.zeros(2))
    with pytest.raises(ValueError, match="mask has shape"):
        posterior(prior, Mask([1, 0, 0]), torch.zeros(1))


# ---------------------------------------------------------------------- labels and guidance
LABELS = [0, 1, 1]


def test_exact_classifier_is_bayes_rule():
    """p_t(c | x) sums to one and equals sum_{k in c} w_k N_k,t(x) / sum_k w_k N_k,t(x), the
    component densities written out by hand in 1-D (1e-12)."""
    sde = VESDE()
    prior = GaussianMixture([0.5, 0.3, 0.2], [[-2.0], [0.5], [2.0]], stds=[0.5, 0.3, 0.8])
    clf = ExactClassifier(prior, LABELS, sde)
    x = torch.linspace(-4, 4, 41, dtype=F64)[:, None]
    for t in (0.0, 0.2, 0.7):
        tt = torch.full((41,), t, dtype=F64)
        lp = clf.log_probs(x, tt)
        torch.testing.assert_close(lp.exp().sum(1), torch.ones(41, dtype=F64), rtol=0, atol=1e-12)
        alpha, sigma = sde.marginal(tt[:1])
        var = alpha**2 * prior.stds**2 + sigma**2
        dens = prior.weights * torch.exp(-0.5 * (x - alpha * prior.means[:, 0]) ** 2 / var)
        dens = dens / var.sqrt()
        bayes = torch.stack([dens[:, 0], dens[:, 1:].sum(1)], 1) / dens.sum(1, keepdim=True)
        torch.testing.assert_close(lp.exp(), bayes, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(clf.log_prob_fn(1)(x, tt), lp[:, 1])


def test_classifier_guidance_with_the_exact_classifier_is_the_exact_conditional_score():
    """s(x) + grad log p_t(c | x) = grad log p_t(x | c) under no_grad, as in sampling (1e-10)."""
    sde, prior = VPSDE(), datasets.unequal_mixture(dtype=F64)
    sub = class_conditional(prior, LABELS, 1)
    torch.testing.assert_close(sub.weights, torch.tensor([0.75, 0.25], dtype=F64))
    guided = classifier_guided_score(
        prior.score_fn(sde), ExactClassifier(prior, LABELS, sde).log_prob_fn(1), 1.0
    )
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    with torch.no_grad():
        for t in (0.01, 0.3, 0.9):
            tt = torch.full((32,), t, dtype=F64)
            torch.testing.assert_close(guided(x, tt), sub.score(x, tt, sde), rtol=1e-10, atol=1e-10)


def test_cfg_with_zero_scale_reproduces_the_conditional_sampler_exactly():
    """w = 0 (with or without an interval): bit-identical samples for a fixed generator."""
    sde, prior = VPSDE(), datasets.unequal_mixture(dtype=F64)
    cond = class_conditional(prior, LABELS, 1).score_fn(sde)

    def run(score_fn):
        gen = torch.Generator().manual_seed(4)
        return sample(sde, score_fn, EulerMaruyama(), (512, 2), steps=50, generator=gen).x

    reference = run(cond)
    assert torch.equal(run(cfg_score(cond, prior.score_fn(sde), 0.0)), reference)
    assert torch.equal(run(cfg_score(cond, prior.score_fn(sde), 3.0, (2.0, 3.0))), reference)


def test_cfg_interval_is_per_sample():
    """Inside [t_lo, t_hi]: s_c + w (s_c - s_u); outside: s_c exactly."""
    sde, prior = VPSDE(), datasets.unequal_mixture(dtype=F64)
    cond = class_conditional(prior, LABELS, 1).score_fn(sde)
    uncond = prior.score_fn(sde)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7], dtype=F64)
    out = cfg_score(cond, uncond, 2.0, (0.25, 0.5))(x, t)
    c, u = cond(x, t), uncond(x, t)
    torch.testing.assert_close(out[1:3], (c + 2.0 * (c - u))[1:3])
    assert torch.equal(out[[0, 3]], c[[0, 3]])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda s: cfg_score(s, s, "2"), "guidance scale w must be a real number"),
        (lambda s: cfg_score(s, s, float("nan")), "must be finite"),
        (lambda s: cfg_score(s, s, 1.0, (0.5, 0.1)), "t_lo < t_hi"),
        (lambda s: classifier_guided_score(s, s, None), "guidance scale must be a real number"),
        (
            lambda s: ExactClassifier(datasets.unequal_mixture(), LABELS, VPSDE()).log_prob_fn(2),
            "0 .. 1",
        ),
        (lambda s: class_conditional(datasets.unequal_mixture(), [0, 0, 2], 1), "no component"),
        (lambda s: class_conditional(datasets.unequal_mixture(), [0, 1], 1), r"labels must have"),
    ],
)
def test_bad_guidance_inputs_give_one_line_errors(make, match):
    with pytest.raises(ValueError, match=match) as err:
        make(lambda x, t: x)
    assert "\n" not in str(err.value)
