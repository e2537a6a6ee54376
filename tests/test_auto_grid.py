"""The cached automatic grid (issue 17): tuned once per model and budget, then read back."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from sde_diffusion.datasets import eight_gaussians, unequal_mixture
from sde_diffusion.sampling.auto_grid import auto_grid, mixture_key
from sde_diffusion.sde import VPSDE
from solvers import DPMSolverPPSDE, Restart, UniPC

# A deliberately tiny budget: this checks the caching, not the tuning's quality (README).
BUDGET = dict(pilot=64, max_evals=12, reference_steps=40)


def _key(mixture) -> str:
    return mixture_key(mixture)


@pytest.fixture
def setup():
    sde, data = VPSDE(), eight_gaussians(dtype=torch.float64)
    return sde, data, data.score_fn(sde), UniPC()


def test_tunes_once_then_reads_the_cache(setup, tmp_path) -> None:
    sde, data, score, solver = setup
    first = auto_grid(sde, score, solver, 5, (2,), model_key=_key(data), cache_dir=tmp_path,
                      **BUDGET)  # fmt: skip
    assert not first.cached and first.nfe > 0 and first.path.is_file()
    record = json.loads(first.path.read_text())
    assert record["levels"] == list(first.levels) and record["described"]["steps"] == 5

    def no_score(x, t):  # a cache hit must not evaluate the model at all
        raise AssertionError("the score was evaluated on a cache hit")

    second = auto_grid(sde, no_score, solver, 5, (2,), model_key=_key(data), cache_dir=tmp_path,
                       **BUDGET)  # fmt: skip
    assert second.cached and second.nfe == 0 and second.levels == first.levels
    # the tuned grid is a grid of this solver's step count, strictly inside the ends
    t = second.grid(sde.T, sde.eps, 5, noise_level=sde.noise_level)
    assert t.shape == (6,) and bool((t[1:] < t[:-1]).all())


def test_key_separates_models_budgets_and_steps(setup, tmp_path) -> None:
    sde, data, score, solver = setup
    other = unequal_mixture(dtype=torch.float64)
    assert _key(data) != _key(other)
    a = auto_grid(sde, score, solver, 5, (2,), model_key=_key(data), cache_dir=tmp_path, **BUDGET)
    b = auto_grid(sde, other.score_fn(sde), solver, 5, (2,), model_key=_key(other),
                  cache_dir=tmp_path, **BUDGET)  # fmt: skip
    c = auto_grid(sde, score, solver, 6, (2,), model_key=_key(data), cache_dir=tmp_path, **BUDGET)
    d = auto_grid(sde, score, solver, 5, (2,), model_key=_key(data), cache_dir=tmp_path,
                  **{**BUDGET, "max_evals": 13})  # fmt: skip
    assert len({a.path, b.path, c.path, d.path}) == 4
    assert not any(g.cached for g in (a, b, c, d))


def test_restart_tunes_its_main_path(setup, tmp_path) -> None:
    """Restart's grid is that of its UniPC main path (``grid_solver``): tuning it is tuning
    that UniPC, so the two share one cache entry, and a stochastic solver without a
    deterministic main path is still refused."""
    sde, data, score, _ = setup
    restart = Restart()
    tuned = auto_grid(sde, score, restart, 5, (2,), model_key=_key(data), cache_dir=tmp_path,
                      **BUDGET)  # fmt: skip
    assert not tuned.cached

    def no_score(x, t):
        raise AssertionError("the score was evaluated on a cache hit")

    same = auto_grid(sde, no_score, UniPC(grid=restart.grid), 5, (2,), model_key=_key(data),
                     cache_dir=tmp_path, **BUDGET)  # fmt: skip
    assert same.cached and same.levels == tuned.levels
    with pytest.raises(ValueError, match="tunes fixed-step deterministic"):
        auto_grid(sde, score, DPMSolverPPSDE(), 5, (2,), model_key=_key(data),
                  cache_dir=tmp_path, **BUDGET)  # fmt: skip


def test_a_corrupt_cache_is_retuned_with_a_warning(setup, tmp_path, caplog) -> None:
    sde, data, score, solver = setup
    first = auto_grid(sde, score, solver, 5, (2,), model_key=_key(data), cache_dir=tmp_path,
                      **BUDGET)  # fmt: skip
    record = json.loads(first.path.read_text())
    record["levels"] = [1.0, 2.0, 0.5]  # not decreasing: not a grid
    first.path.write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING):
        again = auto_grid(sde, score, solver, 5, (2,), model_key=_key(data), cache_dir=tmp_path,
                          **BUDGET)  # fmt: skip
    assert not again.cached and "unreadable grid cache" in caplog.text
    assert again.levels == first.levels  # same pilot, same search: same result
    first.path.write_text("{ not json")
    assert not auto_grid(sde, score, solver, 5, (2,), model_key=_key(data), cache_dir=tmp_path,
                         **BUDGET).cached  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"model_key": ""}, "model_key"),
        ({"pilot": 1}, "pilot"),
        ({"max_evals": 0}, "max_evals"),
        ({"reference_steps": 5}, "reference_steps"),
    ],
)
def test_bad_budget_is_refused(setup, tmp_path, kwargs, match) -> None:
    sde, data, score, solver = setup
    args = {"model_key": "k", "cache_dir": tmp_path, **BUDGET, **kwargs}
    with pytest.raises(ValueError, match=match):
        auto_grid(sde, score, solver, 5, (2,), **args)


def test_sde_sample_auto_grid_tunes_then_reuses(tmp_path, monkeypatch) -> None:
    """``sde-sample auto_grid=true``: the first run tunes and says so in metrics.json, the
    second reads the cache and gives the same samples; a stochastic solver is refused."""
    import numpy as np

    from sde_diffusion.apps._common import UsageError
    from sde_diffusion.apps.sample import run
    from sde_diffusion.config import compose

    monkeypatch.setenv("SDE_DIFFUSION_CACHE", str(tmp_path / "cache"))
    args = ["solver=unipc", "steps=5", "num_samples=500", "progress=false", "figure=false",
            "auto_grid=true", "auto_grid_budget={pilot: 64, max_evals: 12}"]  # fmt: skip
    first = run(compose("sample", args), tmp_path)
    assert first["auto_grid"]["cached"] is False and first["auto_grid"]["nfe_per_pilot_draw"] > 0
    x1 = np.load(tmp_path / "samples.npz")["x"]
    (tmp_path / "again").mkdir()
    second = run(compose("sample", args), tmp_path / "again")
    assert second["auto_grid"]["cached"] is True
    assert second["auto_grid"]["levels"] == first["auto_grid"]["levels"]
    np.testing.assert_array_equal(np.load(tmp_path / "again" / "samples.npz")["x"], x1)
    # a labelled, guided score is another score: another cache entry
    guided = run(compose("sample", [*args, "label=1"]), tmp_path / "again")
    assert guided["auto_grid"]["cached"] is False
    with pytest.raises(UsageError, match="fixed-step deterministic"):
        run(compose("sample", [*args, "solver=euler_maruyama"]), tmp_path / "again")
    # restart's main path is a UniPC of its own grid: tuned (another grid config), then run
    restart = run(compose("sample", [*args, "solver=restart", "steps=6"]), tmp_path / "again")
    assert restart["auto_grid"]["cached"] is False and restart["nfe"] == 6 + 4
    with pytest.raises(UsageError, match="auto_grid_budget.pilot"):
        run(compose("sample", [*args, "auto_grid_budget.pilot=4"]), tmp_path / "again")


def test_one_cache_root_for_grids_and_latents(monkeypatch, tmp_path):
    """Tuned grids and encoded latents share a root: $SDE_DIFFUSION_CACHE, else XDG's."""
    from sde_diffusion.latent import cache_dir as latent_cache_dir
    from sde_diffusion.sampling.auto_grid import default_cache_dir

    monkeypatch.delenv("SDE_DIFFUSION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sde-diffusion" / "grids"
    assert latent_cache_dir() == tmp_path / "xdg" / "sde-diffusion" / "latents"
    monkeypatch.setenv("SDE_DIFFUSION_CACHE", str(tmp_path / "own"))
    assert default_cache_dir() == tmp_path / "own" / "grids"
    assert latent_cache_dir() == tmp_path / "own" / "latents"
