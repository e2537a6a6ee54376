"""Inverse-problem methods against the exact posterior of a Gaussian-mixture prior (issue 15).

    OMP_NUM_THREADS=1 python benchmarks/inverse_methods_benchmark.py          # ~5 min, one core
    python benchmarks/inverse_methods_benchmark.py --budgets 50 200 --n 2000 --out /tmp/rows.json

Every score is exact, so each method's error is its own. Two problems:

- 2-D inpainting: three components, y observes x_1 = 0.2 (Mask), noiselessly and with
  sigma_y = 0.3. Graded by the histogram TV to the exact p_eps(x | y) over the TV floor of
  exact samples at the same n (ratio 1: indistinguishable from exact sampling): of x_2 alone
  (128 bins) when noiseless (the posterior is degenerate in x_1), in 2-D (32 x 32) when noisy.
- 64-D super-resolution: the 1x8x8 digit mixture, y = 4x4 average pooling (a 2x2 image) of a
  prior draw + 0.1 n; the exact posterior has five modes (weights 0.75, 0.14, 0.07, ...).
  Graded with the exact measures (``sde_diffusion.metrics.exact_measures``) against p_eps(x | y)
  beside their floors at the same n: ``mode_tv`` (the mode weights) and the worst ratio.

At matched NFE per sample (prior-score evaluations): replacement, DPS and PiGDM take NFE
Euler-Maruyama steps (DPS and PiGDM also back-propagate through each, about 2x the time);
RePaint(jump 10, resample 5) NFE/5 steps; SMC with 8 particles NFE/8 steps of its own kernel.
DPS uses sigma = 0.1 as its likelihood width for the noiseless problem. Prints a Markdown table
and writes the rows to ``docs/inverse_methods_rows.json``.

``--suite issue`` (the benchmark of issue 15; ~15 min on one thread):

    OMP_NUM_THREADS=1 python benchmarks/inverse_methods_benchmark.py --suite issue

runs every method at matched NFE 100 and 1000 (same matching rules) on hidden-weight random
mixtures: ``--count`` members per dimension (2, 16, 64) of the ``random_mixture`` family of
``random_mixtures_benchmark.py`` drawn from ``--family-seed`` (default 2; the methods see only
the exact prior score). Two problems per mixture, each observing a prior draw:
- inpainting: Mask observing the first half of the coordinates, sigma_y = 0.05;
- denoising: Identity, sigma_y = 0.3.
Graded against the exact p_eps(x | y): 2-D by the 32 x 32 histogram TV over its floor at
``--n`` samples; 16-D and 64-D by sliced W_2 (256 directions) to as many exact posterior
samples (``--n-hd``) over its floor, the mean SW_2 between two exact sets of that n (6 pairs).
Rows go to ``docs/inverse_methods_issue_rows.json``, the figure (median ratio over the mixtures
against NFE, one panel per dimension and problem) to ``docs/inverse_methods_vs_nfe.png``;
``--plot-only`` redraws the figure and the table from the rows.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from sde_diffusion.datasets import digit_mixture
from sde_diffusion.inverse import AvgPool, Identity, Mask, posterior
from sde_diffusion.inverse.methods import DPS, SMC, PiGDM, RePaint, Replacement
from sde_diffusion.metrics.exact_measures import exact_floors, exact_measures
from sde_diffusion.metrics.floor import noise_floor
from sde_diffusion.metrics.sliced_wasserstein import sliced_wasserstein
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.mixture import GaussianMixture
from sde_diffusion.sde import VPSDE
from solvers import EulerMaruyama

sys.path.insert(0, str(Path(__file__).resolve().parent))
from random_mixtures_benchmark import family  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64
PARTICLES, RESAMPLE = 8, 5
PROJECTIONS, FLOOR_PAIRS = 256, 6
CLIP = 1e3  # the figure draws larger ratios (a diverged DPS) at this value
ISSUE_PROBLEMS = {"inpainting": 0.05, "denoising": 0.3}  # problem -> sigma_y


def methods(noiseless: bool) -> dict[str, tuple]:
    """name -> (method, solver or None, steps per NFE)."""
    return {
        "replacement": (Replacement(), EulerMaruyama(), 1),
        "RePaint(10, 5)": (RePaint(10, RESAMPLE), EulerMaruyama(), RESAMPLE),
        "DPS": (DPS(sigma=0.1 if noiseless else None), EulerMaruyama(), 1),
        "PiGDM": (PiGDM(), EulerMaruyama(), 1),
        f"SMC({PARTICLES})": (SMC(PARTICLES), None, PARTICLES),
    }


def _run(method, solver, sde, score, op, y, shape, steps, seed):
    start = time.perf_counter()
    res = method.sample(sde, score, op, y, shape, solver=solver, steps=steps,
                        generator=torch.Generator().manual_seed(seed), dtype=F64)  # fmt: skip
    return res, time.perf_counter() - start


def inpainting_2d(sigma_y: float, budgets: list[int], n: int, seed: int) -> list[dict]:
    sde = VPSDE()
    prior = GaussianMixture([0.3, 0.2, 0.5], [[0.0, -1.5], [0.3, 1.5], [2.0, 0.0]],
                            stds=[0.4, 0.5, 0.5], dtype=F64)  # fmt: skip
    op, y = Mask([True, False], sigma_y=sigma_y), torch.tensor([0.2], dtype=F64)
    post = posterior(prior, op, y).at(sde.eps, sde)
    if sigma_y == 0:
        x2 = GaussianMixture(post.weights, post.means[:, 1:], covs=post.covs[:, 1:, 1:], dtype=F64)
        grade = lambda x: tv_to_mixture(x[:, 1:], x2)  # noqa: E731
    else:
        grade = lambda x: tv_to_mixture(x, post, bins=32)  # noqa: E731
    case = f"2-D inpainting, sigma_y={sigma_y}"
    rows = []
    for budget in budgets:
        for name, (method, solver, per) in methods(sigma_y == 0).items():
            steps = max(1, budget // per)
            res, wall = _run(method, solver, sde, prior.score_fn(sde), op, y, (n, 2), steps, seed)
            tv = grade(res.x)
            rows.append({"case": case, "method": name, "budget": budget, "nfe": res.nfe,
                         "steps": steps, "n": n, "tv": tv.tv, "floor": tv.floor,
                         "ratio": tv.ratio, "wall_s": wall})  # fmt: skip
            print(
                f"{case:32s} {name:15s} NFE {res.nfe:5d}  TV/floor {tv.ratio:6.2f}  {wall:6.1f} s"
            )
    return rows


def superres_digits(budgets: list[int], n: int, seed: int) -> list[dict]:
    sde = VPSDE()
    prior = digit_mixture((1, 8, 8), dtype=F64)
    op = AvgPool(4, sigma_y=0.1)
    g = torch.Generator().manual_seed(1)  # a draw whose posterior has five modes
    y = op.observe(prior.sample(1, g, dtype=F64), g)[0]
    post = posterior(prior, op, y)
    target = post.at(sde.eps, sde)
    floors = exact_floors(target, n, n)
    ref = target.sample(n, torch.Generator().manual_seed(seed + 7), dtype=F64)
    case = "64-D super-resolution (digits, 8x8 from 2x2, sigma_y=0.1)"
    rows = []
    for budget in budgets:
        for name, (method, solver, per) in methods(False).items():
            steps = max(1, budget // per)
            shape = (n, 1, 8, 8)
            res, wall = _run(method, solver, sde, prior.score_fn(sde), op, y, shape, steps, seed)
            m = exact_measures(res.x.reshape(n, -1), target, reference=ref)
            ratios = {k: v / floors[k].mean for k, v in m.values().items()}
            rows.append({"case": case, "method": name, "budget": budget, "nfe": res.nfe,
                         "steps": steps, "n": n, **m.values(),
                         **{f"{k}_floor": floors[k].mean for k in ratios},
                         "mode_tv_ratio": ratios["mode_tv"], "worst_ratio": max(ratios.values()),
                         "worst": max(ratios, key=ratios.get), "wall_s": wall})  # fmt: skip
            print(f"{'64-D superres':32s} {name:15s} NFE {res.nfe:5d}  mode_tv {m.mode_tv:.3f} "
                  f"(floor {floors['mode_tv'].mean:.3f})  worst/floor {max(ratios.values()):6.2f} "
                  f"({max(ratios, key=ratios.get)})  {wall:6.1f} s")  # fmt: skip
    return rows


def _issue_problem(problem: str, dim: int):
    sigma_y = ISSUE_PROBLEMS[problem]
    if problem == "inpainting":
        return Mask([i < dim // 2 for i in range(dim)], sigma_y=sigma_y)
    return Identity(sigma_y=sigma_y)


def _sw(x: torch.Tensor, y: torch.Tensor) -> float:
    return sliced_wasserstein(x, y, n_projections=PROJECTIONS)


def issue_suite(args: argparse.Namespace) -> list[dict]:
    """Every method at matched NFE on ``args.count`` random mixtures per dimension, two problems."""
    sde = VPSDE()
    rows = []
    for index, (name, prior) in enumerate(family(args.family_seed, args.dims, args.count)):
        dim = prior.dim
        n = args.n if dim == 2 else args.n_hd
        for p_index, problem in enumerate(ISSUE_PROBLEMS):
            op = _issue_problem(problem, dim)
            g = torch.Generator().manual_seed(1000 * args.seed + 10 * index + p_index)
            y = op.observe(prior.sample(1, g, dtype=F64), g)[0]
            target = posterior(prior, op, y).at(sde.eps, sde)
            if dim == 2:
                floor = None
            else:
                ref = target.sample(n, g, dtype=F64)
                floor = noise_floor(_sw, target, n, repeats=FLOOR_PAIRS, generator=g).mean
            for budget in args.budgets:
                for method_name, (method, solver, per) in methods(False).items():
                    steps = max(1, budget // per)
                    res, wall = _run(method, solver, sde, prior.score_fn(sde), op, y, (n, dim),
                                     steps, args.seed)  # fmt: skip
                    x = res.x.reshape(n, dim)
                    if not bool(torch.isfinite(x).all()):
                        value, fl, ratio = float("inf"), floor, float("inf")
                    elif dim == 2:
                        tv = tv_to_mixture(x, target, bins=32)
                        value, fl, ratio = tv.tv, tv.floor, tv.ratio
                    else:
                        value = _sw(x, ref)
                        fl, ratio = floor, value / floor
                    rows.append({"mixture": name, "dim": dim, "k": len(prior.weights),
                                 "problem": problem, "sigma_y": ISSUE_PROBLEMS[problem],
                                 "method": method_name, "budget": budget, "nfe": res.nfe,
                                 "steps": steps, "n": n, "metric": "tv" if dim == 2 else "sw2",
                                 "value": value, "floor": fl, "ratio": ratio, "wall_s": wall})  # fmt: skip
                    print(f"{name:6s} {problem:10s} {method_name:15s} NFE {res.nfe:5d}  "
                          f"ratio {ratio:7.2f}  {wall:6.1f} s", flush=True)  # fmt: skip
    return rows


def _groups(rows: list[dict]) -> dict[tuple, list[float]]:
    out: dict[tuple, list[float]] = {}
    for r in rows:
        key = (r["dim"], r["problem"], r["method"], r["budget"])
        out.setdefault(key, []).append(r["ratio"])
    return out


def _fmt(v: float) -> str:
    if v != v or v == float("inf"):
        return "diverged"
    return (
        f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}" if v < 1e4 else f"{v:.0e}"
    )


def issue_table(rows: list[dict]) -> str:
    """Median (worst) ratio to the floor over the mixtures, per dim, problem, method and NFE."""
    groups, budgets = _groups(rows), sorted({r["budget"] for r in rows})
    out = ["| dim, problem | method | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
           "|---|---|" + "---|" * len(budgets)]  # fmt: skip
    last = None
    for dim, problem, name in dict.fromkeys(k[:3] for k in groups):
        cells = []
        for b in budgets:
            v = groups.get((dim, problem, name, b))
            cells.append("" if not v else f"{_fmt(statistics.median(v))} ({_fmt(max(v))})")
        head = f"{dim}-D {problem}" if (dim, problem) != last else ""
        last = (dim, problem)
        out.append(f"| {head} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def issue_figure(rows: list[dict], path: Path) -> None:
    """Median ratio to the floor against NFE per method, one panel per (dimension, problem)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sde_diffusion.plot import quality_vs_nfe

    groups = _groups(rows)
    dims = sorted({r["dim"] for r in rows})
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    fig, axes = plt.subplots(len(problems), len(dims), figsize=(4.2 * len(dims), 3.6 * len(problems)),
                             squeeze=False)  # fmt: skip
    for i, problem in enumerate(problems):
        for j, dim in enumerate(dims):
            ax = axes[i][j]
            pts = [{"sde": "VP", "solver": name, "nfe": b, "tv_ratio": min(statistics.median(v), CLIP)}
                   for (d, p, name, b), v in groups.items() if (d, p) == (dim, problem)]  # fmt: skip
            quality_vs_nfe(pts, metric="tv_ratio", ax=ax)
            metric = "TV" if dim == 2 else "SW$_2$"
            sigma_y = ISSUE_PROBLEMS.get(problem)
            ax.set_title(f"{dim}-D {problem} ($\\sigma_y$ = {sigma_y})", fontsize=10)
            ax.set_ylabel(f"{metric} / floor (median over mixtures)", fontsize=8)
            ax.set_xlabel("NFE per sample", fontsize=8)
            if (i, j) != (0, 0) and ax.get_legend() is not None:
                ax.get_legend().remove()
    fig.suptitle("Inverse-problem methods on random mixtures: ratio to the exact-sampling floor"
                 f" (1 = exact; values above {CLIP:.0e} drawn at it)",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    budgets = sorted({r["budget"] for r in rows})
    out = ["| problem | method | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
           "|---|---|" + "---|" * len(budgets)]  # fmt: skip
    for case in dict.fromkeys(r["case"] for r in rows):
        for name in dict.fromkeys(r["method"] for r in rows if r["case"] == case):
            cells = []
            for b in budgets:
                r = next((r for r in rows if (r["case"], r["method"], r["budget"]) == (case, name, b)), None)  # fmt: skip
                val = None if r is None else r.get("ratio", r.get("worst_ratio"))
                cells.append("" if val is None else f"{val:.2f}")
            out.append(f"| {case} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=["original", "issue"], default="original")
    parser.add_argument("--budgets", type=int, nargs="+", default=None,
                        help="NFE per sample (default 50 200 1000; issue: 100 1000)")  # fmt: skip
    parser.add_argument("--n", type=int, default=4000, help="samples per 2-D run")
    parser.add_argument("--n-digits", type=int, default=2000, help="samples per 64-D digits run")
    parser.add_argument("--n-hd", type=int, default=1500, help="issue: samples per 16/64-D run")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64], help="issue suite")
    parser.add_argument("--count", type=int, default=3, help="issue: mixtures per dimension")
    parser.add_argument("--family-seed", type=int, default=2, help="issue: random_mixture family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "inverse_methods_vs_nfe.png")
    parser.add_argument("--plot-only", action="store_true", help="issue: redraw from --out")
    args = parser.parse_args()
    issue = args.suite == "issue"
    if args.budgets is None:
        args.budgets = [100, 1000] if issue else [50, 200, 1000]
    if args.out is None:
        name = "inverse_methods_issue_rows.json" if issue else "inverse_methods_rows.json"
        args.out = ROOT / "docs" / name
    if issue and args.plot_only:
        rows = json.loads(args.out.read_text())["rows"]
        issue_figure(rows, args.figure)
        print(issue_table(rows))
        return
    torch.set_num_threads(1)
    start = time.perf_counter()
    if issue:
        rows = issue_suite(args)
    else:
        rows = inpainting_2d(0.0, args.budgets, args.n, args.seed)
        rows += inpainting_2d(0.3, args.budgets, args.n, args.seed)
        rows += superres_digits(args.budgets, args.n_digits, args.seed)
    total = time.perf_counter() - start
    if issue:
        print("\nmedian (worst) over the mixtures of TV / floor (2-D), SW_2 / floor (16-D, 64-D)\n")
        print(issue_table(rows))
    else:
        print("\nTV / floor (2-D) and worst exact-measure ratio (64-D); 1 = exact sampling\n")
        print(table(rows))
    meta = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 1 torch thread",
            "torch": torch.__version__, "total_s": total,
            "argv": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"\n{len(rows)} rows in {total:.0f} s -> {args.out}")
    if issue:
        issue_figure(rows, args.figure)
        print(f"figure -> {args.figure}")


if __name__ == "__main__":
    main()
