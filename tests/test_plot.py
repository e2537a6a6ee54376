"""Tests of sde_diffusion.plot: what is drawn (artists, labels, data, shared scales), the histogram
density estimate against an exact normal density, GIF writing, and the ValueErrors on bad input."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import FuncAnimation  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402
from PIL import Image  # noqa: E402

from sde_diffusion.plot import (  # noqa: E402
    animate_paths,
    density_heatmap,
    empirical_density,
    image_grid,
    image_grids,
    marginal_heatmaps,
    sample_paths,
    samples_1d,
    score_field,
    score_fields,
    sde_vs_ode_paths,
    tile_images,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _walk(T: int, N: int, d: int | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (T, N) if d is None else (T, N, d)
    return torch.randn(shape, generator=g, dtype=torch.float64).cumsum(0) * 0.1


# ---------------------------------------------------------------- paths


@pytest.mark.parametrize("n, max_paths, expected", [(30, 10, 10), (5, 50, 5)])
def test_sample_paths_draws_min_n_max_paths_lines(n, max_paths, expected):
    t = torch.linspace(1.0, 0.0, 11)  # decreasing (reverse process)
    ax = sample_paths(t, _walk(11, n), max_paths=max_paths, label="VP", title="paths")
    assert len(ax.lines) == expected
    assert ax.get_xlabel() == "$t$" and ax.get_ylabel() == "$x_t$"
    assert ax.get_title() == "paths"
    lo, hi = ax.get_xlim()
    assert lo < hi and (lo, hi) == pytest.approx((0.0, 1.0))  # t increases left to right
    texts = [x.get_text() for x in ax.get_legend().get_texts()]
    assert texts == ["VP"]  # only the first line carries the label


def test_sample_paths_accepts_numpy_and_trailing_one():
    p = _walk(6, 3, 1).float().numpy()
    ax = sample_paths(np.linspace(0, 1, 6), p)
    assert len(ax.lines) == 3
    np.testing.assert_allclose(ax.lines[1].get_ydata(), p[:, 1, 0], rtol=1e-6)


def test_sample_paths_bad_input():
    with pytest.raises(ValueError, match=r"paths.*\(T, N\) or \(T, N, 1\)"):
        sample_paths(torch.linspace(0, 1, 5), torch.zeros(5, 3, 2))
    with pytest.raises(ValueError, match="times length 4 must match paths"):
        sample_paths(torch.linspace(0, 1, 4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"times must have shape \(T,\)"):
        sample_paths(torch.zeros(5, 1), torch.zeros(5, 3))


@pytest.mark.parametrize("d", [None, 1, 2])
def test_sde_vs_ode_paths_has_two_legend_entries(d):
    t = torch.linspace(1.0, 1e-3, 9)
    ax = sde_vs_ode_paths(t, _walk(9, 6, d, seed=1), _walk(9, 6, d, seed=2), max_paths=4)
    texts = [x.get_text() for x in ax.get_legend().get_texts()]
    assert texts == ["reverse SDE", "probability-flow ODE"]
    assert len(ax.lines) == 8  # 4 SDE + 4 ODE
    ode = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(ode) == 4 and all(ln.get_color() == "k" for ln in ode)
    if d == 2:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("$x_1$", "$x_2$")
        assert len(ax.collections) == 1  # start markers
    else:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("$t$", "$x_t$")


def test_sde_vs_ode_paths_bad_input():
    t = torch.linspace(1, 0, 5)
    with pytest.raises(ValueError, match="same dimension"):
        sde_vs_ode_paths(t, torch.zeros(5, 3, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="ode_paths"):
        sde_vs_ode_paths(t, torch.zeros(5, 3), torch.zeros(6, 3))


# ---------------------------------------------------------------- density


def test_empirical_density_matches_normal_density():
    # Rows: N(0, 1) and N(0, 2^2) samples, n = 200000, bins of width dx = 0.2 centred at xs.
    # p_hat = count / (n dx) with count ~ Binomial(n, q), q ~ p dx, so sd(p_hat) ~ sqrt(p / (n dx))
    # <= sqrt(0.4 / 40000) = 0.0032; the max over 51 bins stays below ~4 sd = 0.013. Binning bias
    # |p''| dx^2 / 24 <= 7e-4. Tolerance 0.02.
    n, stds = 200_000, torch.tensor([1.0, 2.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    paths = torch.randn(2, n, generator=g, dtype=torch.float64) * stds[:, None]
    xs = torch.linspace(-5.0, 5.0, 51, dtype=torch.float64)
    dens = empirical_density(torch.tensor([0.0, 1.0]), xs, paths.float()[..., None])
    assert dens.dtype == torch.float64 and dens.shape == (2, 51)
    exact = torch.exp(-0.5 * (xs / stds[:, None]) ** 2) / (stds[:, None] * math.sqrt(2 * math.pi))
    err = (dens - exact).abs().max().item()
    assert err < 0.02, err
    # Each row integrates to the fraction of samples inside [-5.1, 5.1) (exact up to rounding).
    dx = 0.2
    frac = ((paths.float().double() >= -5.1) & (paths.float().double() < 5.1)).double().mean(1)
    torch.testing.assert_close(dens.sum(1) * dx, frac, rtol=0, atol=1e-9)
    assert frac[1] < 1.0  # the std-2 row really has samples outside the range


def test_empirical_density_bad_input():
    t, p = torch.linspace(0, 1, 3), torch.zeros(3, 10)
    with pytest.raises(ValueError, match="uniformly spaced"):
        empirical_density(t, torch.tensor([0.0, 1.0, 3.0]), p)
    with pytest.raises(ValueError, match="times length 2 must match paths"):
        empirical_density(t[:2], torch.linspace(0, 1, 5), p)


def test_density_heatmap_quadmesh_data_and_colorbar():
    t, xs = torch.linspace(0, 1, 7), torch.linspace(-2, 2, 9)
    d = torch.rand(7, 9, generator=torch.Generator().manual_seed(0))
    ax = density_heatmap(t, xs, d, title="OU")
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    np.testing.assert_allclose(np.asarray(meshes[0].get_array()), d.numpy().T, rtol=1e-6)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("$t$", "$x$", "OU")
    cbar = meshes[0].colorbar
    assert cbar is not None and cbar.ax.get_ylabel() == "$p_t(x)$"
    assert len(ax.figure.axes) == 2
    ax2 = density_heatmap(t, xs, d, colorbar=False)
    assert len(ax2.figure.axes) == 1


def test_density_heatmap_bad_shape():
    with pytest.raises(ValueError, match=r"density shape must be \(len\(times\), len\(xs\)\)"):
        density_heatmap(torch.linspace(0, 1, 7), torch.linspace(-2, 2, 9), torch.zeros(9, 7))


def test_marginal_heatmaps_share_color_scale():
    t, xs = torch.linspace(0, 1, 5), torch.linspace(-1, 1, 6)
    exact, sim = torch.rand(5, 6), 3.0 * torch.rand(5, 6) + 0.5
    fig = marginal_heatmaps(t, xs, exact, sim, titles=("Fokker-Planck", "Euler-Maruyama"))
    assert len(fig.axes) == 3  # two panels and one shared colorbar
    panels = fig.axes[:2]
    assert [ax.get_title() for ax in panels] == ["Fokker-Planck", "Euler-Maruyama"]
    clims = [next(c for c in ax.collections if isinstance(c, QuadMesh)).get_clim() for ax in panels]
    both = torch.cat([exact, sim])
    assert clims[0] == clims[1] == pytest.approx((both.min().item(), both.max().item()))
    with pytest.raises(ValueError, match="simulated shape"):
        marginal_heatmaps(t, xs, exact, sim[:, :5])


# ---------------------------------------------------------------- fields


def _quiver(ax) -> Quiver:
    qs = [c for c in ax.collections if isinstance(c, Quiver)]
    assert len(qs) == 1
    return qs[0]


def test_score_field_arrows_point_to_origin_and_longest_is_one_cell():
    n = 11  # grid spacing 0.6 on (-3, 3)
    ax = score_field(lambda x, t: -x / (t[:, None] + 0.01), 0.05, n=n, title="t = 0.05")
    q = _quiver(ax)
    assert q.N == n * n
    X, Y, U, V = q.X, q.Y, np.asarray(q.U), np.asarray(q.V)
    # U, V parallel to -(X, Y) with one positive common factor k (normalise=True).
    k = 0.6 / np.hypot(X, Y).max()
    np.testing.assert_allclose(U, -k * X, atol=1e-6)
    np.testing.assert_allclose(V, -k * Y, atol=1e-6)
    assert np.hypot(U, V).max() == pytest.approx(0.6, rel=1e-6)
    assert ax.get_title() == "t = 0.05"


def test_score_field_raw_and_bad_input():
    calls = []

    def score(x, t):
        calls.append((x.shape, t.shape, t[0].item()))
        return torch.stack([torch.ones_like(x[:, 0]), 2 * x[:, 0]], 1)

    ax = score_field(score, 0.3, n=5, normalise=False, lim=((0, 1), (0, 2)))
    q = _quiver(ax)
    assert calls == [((25, 2), (25,), pytest.approx(0.3))]
    np.testing.assert_allclose(np.asarray(q.U), 1.0)
    np.testing.assert_allclose(np.asarray(q.V), 2 * q.X, atol=1e-6)
    with pytest.raises(ValueError, match=r"score\(x, t\) must return shape"):
        score_field(lambda x, t: x[:, :1], 0.1, n=5)
    with pytest.raises(ValueError, match="n must be >= 2"):
        score_field(score, 0.1, n=1)


def test_score_fields_grid_titles_and_row_labels():
    scores = {"exact": lambda x, t: -x, "learned": lambda x, t: -1.1 * x}
    fig = score_fields(scores, [0.05, 0.5, 1.0], n=5)
    assert len(fig.axes) == 6
    axes = np.array(fig.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["t = 0.05", "t = 0.5", "t = 1"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["exact", "learned"]
    assert all(_quiver(ax).N == 25 for ax in fig.axes)


# ---------------------------------------------------------------- images


def test_image_grid_tiled_shape_and_values():
    # N=10 images 5x4, nrow=4, padding=2: cols=4, rows=ceil(10/4)=3,
    # shape (rows*(H+pad)+pad, cols*(W+pad)+pad, 3) = (3*7+2, 4*6+2, 3) = (23, 26, 3).
    g = torch.Generator().manual_seed(0)
    imgs = 1.5 * torch.randn(10, 3, 5, 4, generator=g)  # many pixels outside [-1, 1]
    ax = image_grid(imgs, nrow=4, padding=2, title="EM")
    ims = [a for a in ax.get_children() if isinstance(a, AxesImage)]
    assert len(ims) == 1
    arr = np.asarray(ims[0].get_array())
    assert arr.shape == (23, 26, 3)
    assert arr.min() >= 0.0 and arr.max() <= 1.0
    # image k = 6 sits in row 1, column 2: top = 2 + 1*7, left = 2 + 2*6
    want = (imgs[6].clamp(-1, 1).permute(1, 2, 0).double().numpy() + 1) / 2
    np.testing.assert_allclose(arr[9:14, 14:18], want, atol=1e-6)
    assert not ax.axison and ax.get_title() == "EM"


def test_image_grid_grey_and_bad_shapes():
    ax = image_grid(torch.zeros(3, 1, 4, 4), nrow=8, value_range=(0.0, 1.0), padding=1)
    im = next(a for a in ax.get_children() if isinstance(a, AxesImage))
    assert np.asarray(im.get_array()).shape == (1 * 5 + 1, 3 * 5 + 1)
    assert im.get_cmap().name == "gray"
    assert tile_images(np.ones((2, 1, 3, 3)), padding=0).shape == (3, 6)
    for bad in (torch.zeros(2, 2, 4, 4), torch.zeros(3, 4, 4), torch.zeros(2, 4, 4, 3)):
        with pytest.raises(ValueError, match=r"images must have shape \(N, C, H, W\)"):
            image_grid(bad)


def test_image_grids_one_titled_panel_per_group():
    groups = {"Euler-Maruyama": torch.zeros(4, 1, 6, 6), "PC": torch.ones(4, 3, 6, 6)}
    fig = image_grids(groups, nrow=2)
    assert [ax.get_title() for ax in fig.axes] == ["Euler-Maruyama", "PC"]
    with pytest.raises(ValueError, match="groups"):
        image_grids({})
    # four panels: a 2 x 2 block, not one strip of tiny images (notebook 6)
    fig = image_grids({str(i): torch.zeros(4, 1, 6, 6) for i in range(5)}, nrow=2)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert len(titled) == 5 and len(fig.axes) == 6
    width, height = fig.get_size_inches()
    assert width == pytest.approx(8.0) and height == pytest.approx(3 * 4.4)


# ---------------------------------------------------------------- animation


def _gif_frames(path) -> int:
    with Image.open(path) as im:
        return im.n_frames


def test_animate_paths_scatter_gif(tmp_path):
    T, N = 4, 200
    states = _walk(T, N, 2)
    out = tmp_path / "scatter.gif"

    def log_prob(x, t):
        return -0.5 * (x**2).sum(1) - math.log(2 * math.pi)

    anim = animate_paths(torch.linspace(1, 0, T), states, out, fps=4, log_prob=log_prob, title="VP")
    assert isinstance(anim, FuncAnimation)
    assert _gif_frames(out) == T
    ax = anim._fig.axes[0]
    assert ax.get_title().startswith("VP: t = ")


def test_animate_paths_hist_gif(tmp_path):
    T, N = 4, 200
    out = tmp_path / "hist.gif"
    anim = animate_paths(np.linspace(0, 1, T), _walk(T, N).numpy(), out, kind="hist", lim=(-1, 1))
    assert isinstance(anim, FuncAnimation)
    assert _gif_frames(out) == T


def test_animate_paths_bad_input():
    t = torch.linspace(0, 1, 4)
    with pytest.raises(ValueError, match="kind must be one of"):
        animate_paths(t, torch.zeros(4, 10, 2), kind="video")
    with pytest.raises(ValueError, match=r"kind='scatter' needs states of shape \(T, N, 2\)"):
        animate_paths(t, torch.zeros(4, 10), kind="scatter")
    with pytest.raises(ValueError, match="times length 4 must match states"):
        animate_paths(t, torch.zeros(5, 10, 2))


def test_samples_1d_histogram_and_density_curve_label() -> None:
    from sde_diffusion.datasets import bimodal_1d

    data = bimodal_1d()
    x = data.sample(2000, generator=torch.Generator().manual_seed(0))
    ax = samples_1d(x, data.log_prob, density_label="prior")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["samples", "prior"]
    assert len(ax.patches) == 100  # one bar per bin
    (curve,) = ax.lines
    # The curve is the exact density: its trapezoid integral over the plotted range is ~1.
    area = np.trapezoid(curve.get_ydata(), curve.get_xdata())
    assert abs(area - 1.0) < 1e-2
    plt.close("all")


def _rows():
    rows = []
    for solver in ("euler_maruyama", "torchsde"):  # identical curves, as in notebook 3
        for nfe, tv in ((10, 0.4), (100, 0.1)):
            rows.append(dict(sde="vp", solver=solver, nfe=nfe, tv=tv, tv_floor=0.05,
                             tv_ratio=tv / 0.05, wall_time_s=nfe / 100))  # fmt: skip
    rows.append(dict(sde="vp", solver="ode", nfe=60, tv=0.05, tv_floor=0.05, tv_ratio=1.0,
                     wall_time_s=0.3))  # an adaptive solver, on the floor  # fmt: skip
    return rows


def test_comparison_plot_names_the_metric_and_keeps_every_series_visible():
    from sde_diffusion.plot import quality_vs_nfe

    ax = quality_vs_nfe(_rows())
    assert ax.get_ylabel() == "total variation to the exact law"
    assert "against score evaluations" in ax.get_title()
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    em, ts, ode = lines["vp / euler_maruyama"], lines["vp / torchsde"], lines["vp / ode"]
    assert em.get_marker() != ts.get_marker()  # coinciding curves stay distinguishable
    floor = lines["noise floor"]
    assert ode.get_markersize() > em.get_markersize() and ode.get_zorder() > floor.get_zorder()
    plt.close("all")


def test_ratio_plot_draws_the_floor_at_one():
    from sde_diffusion.plot import quality_vs_nfe

    ax = quality_vs_nfe(_rows(), metric="tv_ratio")
    assert ax.get_ylabel() == "TV / its noise floor (1 = the floor)"
    floor = next(ln for ln in ax.get_lines() if ln.get_label().startswith("noise floor"))
    assert list(floor.get_ydata()) == [1.0, 1.0]
    plt.close("all")
