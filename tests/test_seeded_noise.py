"""SeededNoise: per-sample seeds give batch-composition-independent, standard normal draws."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from sde_diffusion import VPSDE, sample
from sde_diffusion.datasets import eight_gaussians
from solvers import EulerMaruyama, GottaGoFast, PredictorCorrector, SeededNoise

N = 200_000


def test_rows_depend_only_on_their_seed_across_calls() -> None:
    small, big = SeededNoise([5, 6, 7]), SeededNoise(list(range(10)))
    for _ in range(3):  # the k-th draw of a seed is the same in both batches, call after call
        a, b = small.normal(torch.zeros(3, 2, 4)), big.normal(torch.zeros(10, 2, 4))
        assert torch.equal(a, b[5:8])
    # Order within the batch does not matter either.
    rev = SeededNoise([7, 6, 5]).normal(torch.zeros(3, 2, 4))
    assert torch.equal(rev, SeededNoise([5, 6, 7]).normal(torch.zeros(3, 2, 4)).flip(0))


def test_draws_are_standard_normal_and_uncorrelated() -> None:
    noise = SeededNoise(torch.arange(N // 2))
    z1 = noise.normal(torch.zeros(N // 2, 2, dtype=torch.float64))
    z2 = noise.normal(torch.zeros(N // 2, 2, dtype=torch.float64))
    flat = z1.flatten()
    # Kolmogorov-Smirnov against N(0, 1): with fixed seeds the p-value is a fixed number; a
    # broken hash or Box-Muller (wrong scale, a lattice, a bias) gives p << 1e-6 at N = 2e5.
    assert stats.kstest(flat.numpy(), "norm").pvalue > 1e-3
    se = 1 / math.sqrt(N)  # standard error of a mean of N unit-variance terms
    assert abs(flat.mean().item()) < 5 * se
    assert abs(flat.var().item() - 1) < 5 * math.sqrt(2) * se
    assert abs((flat**4).mean().item() - 3) < 5 * math.sqrt(96) * se  # Var(z^4) = 96
    # Correlations between elements of a row, between calls and between adjacent seeds.
    for a, b in [(z1[:, 0], z1[:, 1]), (z1[:, 0], z2[:, 0]), (z1[:-1, 0], z1[1:, 0])]:
        r = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
        assert abs(r) < 5 / math.sqrt(a.numel())


def test_increment_variance_dtype_and_device() -> None:
    noise = SeededNoise(torch.arange(N))
    t, t_next = torch.tensor(0.7), torch.tensor(0.45)
    dw = noise.increment(t, t_next, torch.zeros(N, 1, dtype=torch.float32))
    assert dw.dtype == torch.float32 and dw.shape == (N, 1)
    assert abs(dw.var().item() / 0.25 - 1) < 5 * math.sqrt(2 / N)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_same_draws_on_cuda() -> None:
    like = torch.zeros(64, 3, dtype=torch.float64)
    cpu = SeededNoise(torch.arange(64)).normal(like)
    gpu = SeededNoise(torch.arange(64)).normal(like.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "seeds, match",
    [([-1, 2], "non-negative"), ([0.5, 1.0], "integers"), ([[1, 2]], "1-D"), ([], "non-empty")],
)
def test_bad_seeds(seeds: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SeededNoise(seeds)  # type: ignore[arg-type]


def test_draw_for_a_subset_of_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="whole batch"):
        SeededNoise([1, 2, 3]).normal(torch.zeros(2, 2))


@pytest.mark.parametrize("solver", [EulerMaruyama(), PredictorCorrector()])
def test_sample_with_seeds_is_independent_of_the_batch(solver) -> None:
    sde, data = VPSDE(), eight_gaussians(dtype=torch.float64)
    score = data.score_fn(sde)
    kw = dict(steps=20, dtype=torch.float64)
    whole = sample(sde, score, solver, (12, 2), seeds=range(100, 112), **kw).x
    part = sample(sde, score, solver, (4, 2), seeds=[104, 111, 100, 107], **kw).x
    # The exact mixture score acts row by row; float64 rounding may differ with batch size.
    torch.testing.assert_close(part, whole[[4, 11, 0, 7]], rtol=1e-10, atol=1e-10)


def test_sample_seeds_bad_input() -> None:
    sde, data = VPSDE(), eight_gaussians()
    score = data.score_fn(sde)
    with pytest.raises(ValueError, match="either generator or seeds"):
        sample(
            sde, score, EulerMaruyama(), (2, 2), steps=2, seeds=[0, 1], generator=torch.Generator()
        )
    with pytest.raises(ValueError, match="3 entries for a batch of 2"):
        sample(sde, score, EulerMaruyama(), (2, 2), steps=2, seeds=[0, 1, 2])
    with pytest.raises(ValueError, match="whole batch"):  # per-sample adaptive draws subsets
        sample(sde, score, GottaGoFast(), (64, 2), seeds=range(64))
