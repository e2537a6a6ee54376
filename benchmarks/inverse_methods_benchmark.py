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
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sde_diffusion.datasets import digit_mixture
from sde_diffusion.inverse import AvgPool, Mask, posterior
from sde_diffusion.inverse.methods import DPS, SMC, PiGDM, RePaint, Replacement
from sde_diffusion.metrics.exact_measures import exact_floors, exact_measures
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.mixture import GaussianMixture
from sde_diffusion.sde import VPSDE
from solvers import EulerMaruyama

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64
PARTICLES, RESAMPLE = 8, 5


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
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--n", type=int, default=4000, help="samples per 2-D run")
    parser.add_argument("--n-digits", type=int, default=2000, help="samples per 64-D run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "inverse_methods_rows.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = inpainting_2d(0.0, args.budgets, args.n, args.seed)
    rows += inpainting_2d(0.3, args.budgets, args.n, args.seed)
    rows += superres_digits(args.budgets, args.n_digits, args.seed)
    total = time.perf_counter() - start
    print("\nTV / floor (2-D) and worst exact-measure ratio (64-D); 1 = exact sampling\n")
    print(table(rows))
    meta = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 1 torch thread",
            "torch": torch.__version__, "total_s": total, "argv": vars(args) | {"out": str(args.out)}}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"\n{len(rows)} rows in {total:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
