"""Numbers that must not pass through unchecked: the denoising step, low-precision time grids,
chunked sampling and the memory and step limits of the apps (issue 12, part 6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

import sde_diffusion.sampling.chunked as chunked
from sde_diffusion.apps._common import UsageError
from sde_diffusion.apps._job import MAX_STEPS, sample_job
from sde_diffusion.datasets import eight_gaussians
from sde_diffusion.reverse import tweedie_denoise
from sde_diffusion.sampling import sample, sample_chunked
from sde_diffusion.sde.ve import VESDE
from sde_diffusion.sde.vp import VPSDE
from solvers import EulerMaruyama, Heun, Solver


def _point_score(sde):
    """The exact score of data at the single point 0: -x / sigma(t)^2 (alpha = 1 for VE)."""

    def score(x, t):
        return -x / sde.marginal(t)[1].reshape(-1, *[1] * (x.ndim - 1)) ** 2

    return score


# --- the final denoising step ----------------------------------------------------------------


def test_nan_in_the_denoising_step_is_caught_and_named():
    sde, data = VPSDE(), eight_gaussians()
    exact = data.score_fn(sde)

    def score(x, t):  # finite on the whole grid, NaN only at t = eps (the Tweedie step)
        s = exact(x, t)
        return torch.where((t <= sde.eps * 1.001)[:, None], torch.nan, s)

    g = torch.Generator().manual_seed(0)
    with pytest.raises(FloatingPointError, match=r"final denoising step \(Tweedie, at t=eps=0.001"):
        sample(sde, score, EulerMaruyama(), (16, 2), steps=10, generator=g, denoise=True)
    # without denoising the same score passes: the error is the denoising step's
    g = torch.Generator().manual_seed(0)
    assert torch.isfinite(
        sample(sde, score, EulerMaruyama(), (16, 2), steps=10, generator=g).x
    ).all()
    g = torch.Generator().manual_seed(0)
    res = sample(sde, score, EulerMaruyama(), (16, 2), steps=10, generator=g, denoise=True,
                 check_finite=False)  # fmt: skip
    assert torch.isnan(res.x).all()  # check_finite=False lets it through, as documented


def test_float16_denoising_of_a_point_mass_is_caught():
    """The genuine case: sigma(eps)^2 = 1.7e-8 underflows to 0 in float16 for VE at eps = 1e-5,
    so a score that grows like 1/sigma^2 is inf there and Tweedie gives 0 * inf = NaN."""
    sde = VESDE(sigma_max=5.0)
    score = _point_score(sde)
    g = torch.Generator().manual_seed(0)
    ref = sample(sde, score, EulerMaruyama(), (8, 2), steps=20, generator=g, denoise=True)
    assert ref.x.abs().max() < 1e-3  # float32: Tweedie returns the point (0) itself
    g = torch.Generator().manual_seed(0)
    with pytest.raises(FloatingPointError, match="final denoising step"):
        sample(sde, score, EulerMaruyama(), (8, 2), steps=20, generator=g, denoise=True,
               dtype=torch.float16)  # fmt: skip


def test_tweedie_computes_sigma_squared_above_float16():
    """VE at eps = 1e-5: sigma^2 = 1.7e-8 is 0 in float16; the denoiser must still see it."""
    sde = VESDE()
    x = torch.full((4, 2), 0.5, dtype=torch.float16)
    t = torch.full((4,), 1e-5, dtype=torch.float32)
    sigma2 = float(sde.marginal(t)[1][0] ** 2)

    def score(x, t):  # a finite score whose Tweedie correction is exactly -x/2
        return -x.float() / (2 * sigma2)

    out = tweedie_denoise(sde, score, x, t)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), torch.full((4, 2), 0.25), rtol=2e-3, atol=0)


# --- low-precision time grids ----------------------------------------------------------------


@dataclass(frozen=True)
class _Recorder(Solver):
    """Euler for the ODE, keeping every step's t and dt in its state (for the test only)."""

    def init(self, equation, x, grid):
        return []

    def step(self, equation, x, t, t_next, state, noise):
        dt = t_next - t
        state.append((t, dt))
        tb = t.to(x.dtype).expand(x.shape[0])
        return x + equation.drift(x, tb) * dt, state


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_grid_has_no_zero_length_step(dtype):
    sde, data = VPSDE(), eight_gaussians()
    seen = []
    res = sample(sde, data.score_fn(sde), _Recorder(), (2, 2), steps=3000, dtype=dtype,
                 generator=torch.Generator().manual_seed(0), save_at="grid",
                 callback=lambda i, t, x: seen.append(t))  # fmt: skip
    assert res.x.dtype == dtype and torch.isfinite(res.x).all()
    assert res.times.dtype in (torch.float32, torch.float64)
    assert bool((res.times.diff() < 0).all())  # 3,000 distinct decreasing times
    ts = torch.stack(seen)
    assert len(seen) == 3000 and bool((ts.diff() < 0).all())


def test_low_precision_solver_steps_are_never_zero():
    """The step sizes a solver is handed at 3,000 steps in float16 (477 were 0 before)."""
    sde, data = VPSDE(), eight_gaussians()
    steps: list[Any] = []

    @dataclass(frozen=True)
    class Spy(_Recorder):
        def step(self, equation, x, t, t_next, state, noise):
            steps.append(t_next - t)
            return super().step(equation, x, t, t_next, state, noise)

    sample(sde, data.score_fn(sde), Spy(), (2, 2), steps=3000, dtype=torch.float16,
           generator=torch.Generator().manual_seed(0))  # fmt: skip
    dts = torch.stack(steps).double()
    assert dts.numel() == 3000 and bool((dts < 0).all())
    torch.testing.assert_close(dts.sum(), torch.tensor(sde.eps - sde.T, dtype=torch.float64))


def test_float16_exact_score_run_stays_finite_and_close():
    """Euler-Maruyama at 3,000 steps, same per-sample seeds in float16 and float32: the float16
    run stays finite and near the float32 one. Measured (256 samples): median distance 0.018
    with the float32 grid, 0.097 with the old float16 grid (477 steps of zero length)."""
    sde, data = VPSDE(), eight_gaussians()
    run = {}
    for dtype in (torch.float16, torch.float32):
        run[dtype] = sample(sde, data.score_fn(sde), EulerMaruyama(), (128, 2), steps=3000,
                            dtype=dtype, seeds=range(128)).x  # fmt: skip
    assert run[torch.float16].dtype == torch.float16 and torch.isfinite(run[torch.float16]).all()
    distance = (run[torch.float16].float() - run[torch.float32]).norm(dim=1)
    assert float(distance.median()) < 0.05  # each mode's std is 0.2


# --- chunked sampling ------------------------------------------------------------------------


@pytest.mark.parametrize("solver", [EulerMaruyama(), Heun()], ids=["euler_maruyama", "heun"])
def test_chunked_equals_one_shot_with_per_sample_seeds(solver):
    sde, data = VPSDE(), eight_gaussians()
    seeds = 1000 + torch.arange(23)
    kw = dict(steps=8, seeds=seeds, denoise=True)
    whole = sample(sde, data.score_fn(sde), solver, (23, 2), **kw)
    parts = sample_chunked(sde, data.score_fn(sde), solver, (23, 2), batch_size=7, **kw)
    assert torch.equal(parts.x, whole.x)
    assert parts.nfe == 4 * whole.nfe  # four chunks (7 + 7 + 7 + 2), each the same calls
    one = sample_chunked(sde, data.score_fn(sde), solver, (23, 2), batch_size=100, **kw)
    assert torch.equal(one.x, whole.x) and one.nfe == whole.nfe


def test_chunked_trajectory_and_generator():
    sde, data = VPSDE(), eight_gaussians()
    kw = dict(steps=4, seeds=range(10), save_at="grid")
    whole = sample(sde, data.score_fn(sde), EulerMaruyama(), (10, 2), **kw)
    parts = sample_chunked(sde, data.score_fn(sde), EulerMaruyama(), (10, 2), batch_size=3, **kw)
    assert torch.equal(parts.trajectory, whole.trajectory) and torch.equal(parts.times, whole.times)
    # with one generator the chunks draw one after another: the samples depend on the chunking
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a = sample_chunked(sde, data.score_fn(sde), EulerMaruyama(), (10, 2), batch_size=3,
                       steps=4, generator=g1).x  # fmt: skip
    b = sample(sde, data.score_fn(sde), EulerMaruyama(), (10, 2), steps=4, generator=g2).x
    assert a.shape == b.shape and not torch.equal(a, b)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "7", None])
def test_sample_chunked_refuses_bad_batch_size(bad):
    sde, data = VPSDE(), eight_gaussians()
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        sample_chunked(sde, data.score_fn(sde), EulerMaruyama(), (4, 2), batch_size=bad, steps=2)


def _job(**kw):
    sde, data = VPSDE(), eight_gaussians()
    solver = kw.pop("solver", EulerMaruyama())
    args = dict(steps=6, eps=1e-3, num_samples=30, seed=3, device=torch.device("cpu"),
                dtype=torch.float32)  # fmt: skip
    return sample_job(sde, solver, data, data.score_fn(sde), **{**args, **kw})


def test_sample_job_does_not_depend_on_batch_size():
    x7, info7 = _job(batch_size=7)
    x30, info30 = _job(batch_size=30)
    xnone, _ = _job()
    assert torch.equal(x7, x30) and torch.equal(x30, xnone)
    assert info7["batch_size"] == 7 and info30["batch_size"] == 30
    assert info7["nfe"] == info30["nfe"] == 6 and info7["per_sample_seeds"]
    # the documented seeds: sample i of seed s has seed s * 2**32 + i
    ref = sample(VPSDE(), eight_gaussians().score_fn(VPSDE()), EulerMaruyama(), (30, 2),
                 steps=6, seeds=3 * 2**32 + torch.arange(30))  # fmt: skip
    assert torch.equal(x7, ref.x)
    x_other, _ = _job(seed=4, batch_size=7)
    assert not torch.equal(x_other, x7)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "many", True])
def test_sample_job_refuses_bad_batch_size(bad):
    with pytest.raises(UsageError, match=r"^batch_size must be an integer >= 1, got"):
        _job(batch_size=bad)


def test_sample_job_refuses_a_chunk_that_does_not_fit(monkeypatch):
    whole, _ = _job(batch_size=30)
    monkeypatch.setattr(chunked, "available_memory", lambda device: 3_000)
    # the samples take 30 x 2 x (4 + 16) = 1,200 B (float32, and the metrics' two float64
    # copies), which fit; a chunk of 30 needs 30 x 2 x 4 x 8 = 1,920 B of the 1,800 B left
    with pytest.raises(UsageError, match=r"^batch_size=30 needs about .* GiB on cpu for one"):
        _job(batch_size=30)
    x, _ = _job(batch_size=10)  # 640 B a chunk: fits, and gives the same samples
    assert torch.equal(x, whole)


def test_sample_job_refuses_more_samples_than_host_memory(monkeypatch):
    monkeypatch.setattr(chunked, "available_memory", lambda device: 2**30)
    with pytest.raises(
        UsageError, match=r"^num_samples=1000000000 needs about 37\.3 GiB of host memory"
    ):
        _job(num_samples=10**9, batch_size=1000)


def test_sample_job_refuses_too_many_steps():
    with pytest.raises(UsageError, match=r"^steps=10000000 is above the maximum of 1,000,000"):
        _job(steps=10**7)
    assert MAX_STEPS == 1_000_000


def _compose(overrides):
    from hydra import compose, initialize_config_module

    with initialize_config_module("sde_diffusion.conf", version_base="1.3"):
        return compose("sample", overrides=overrides)


def test_sde_sample_app_batch_size(tmp_path):
    """``sde-sample`` in process: batch_size=7 and batch_size=40 write the same samples."""
    import numpy as np

    from sde_diffusion.apps.sample import run

    small = ["num_samples=40", "steps=5", "figure=false", "progress=false"]
    xs = []
    for b in (7, 40):
        out = tmp_path / f"b{b}"
        out.mkdir()
        metrics = run(_compose([*small, f"batch_size={b}"]), out)
        assert metrics["batch_size"] == b and metrics["nfe"] == 5
        xs.append(np.load(out / "samples.npz")["x"])
    assert xs[0].shape == (40, 2) and (xs[0] == xs[1]).all()
    (tmp_path / "bad").mkdir()
    with pytest.raises(UsageError, match="batch_size must be an integer >= 1, got 0"):
        run(_compose([*small, "batch_size=0"]), tmp_path / "bad")
