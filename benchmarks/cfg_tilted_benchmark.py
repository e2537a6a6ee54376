"""What classifier-free guidance samples, against exact answers (issue 15).

    OMP_NUM_THREADS=1 python benchmarks/cfg_tilted_benchmark.py            # ~2 min on one core
    python benchmarks/cfg_tilted_benchmark.py --n 5000 --steps 200 --out /tmp/rows.json

For a labelled Gaussian mixture every score is exact: s(x, t | y) of the class-conditional
sub-mixture and s(x, t) of the whole. CFG runs s + w (s(x|y) - s(x)) (``cfg_score``) with a
stochastic (Euler-Maruyama) and a deterministic (Heun, probability-flow ODE) solver, and the
samples are compared, by the TV of their histogram (64 x 64 bins in 2-D, 128 in 1-D, over the
mixture's range), with

- the tilted density q_w ∝ p(x|y)^(1+w) p(x)^(-w) at the end time eps, normalised on the grid
  (``sde_diffusion.guidance.tilted``): what CFG is often said to sample;
- p(x | y) at eps, the class-conditional law (w = 0 should match it);

each beside its floor, the TV that exact samples of that law give at the same n and bins.
``in_class``: the fraction of samples nearest a mode of class y; ``spread``: sqrt(trace Cov)
of the samples, beside that of q_w. Prints a Markdown table and
writes the rows to ``docs/cfg_tilted_rows.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sde_diffusion.config import build, compose
from sde_diffusion.guidance.tilted import cfg_against_exact
from sde_diffusion.mixture import GaussianMixture

ROOT = Path(__file__).resolve().parents[1]

#: name -> (mixture, component labels, the label sampled)
PROBLEMS = {
    "2-D, 4 modes, 2 overlapping classes": (
        GaussianMixture(
            [0.25] * 4,
            [[-1.5, 0.0], [1.5, 0.0], [0.0, 1.5], [0.0, -1.5]],
            stds=[0.6] * 4,
            dtype=torch.float64,
        ),
        [0, 0, 1, 1],
        0,
    ),
    "1-D, 2 overlapping modes (0.3 / 0.7)": (
        GaussianMixture([0.3, 0.7], [[-1.0], [1.0]], stds=[0.7, 0.7], dtype=torch.float64),
        [0, 1],
        0,
    ),
}
SOLVERS = ("euler_maruyama", "ode_heun")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="samples per run")
    parser.add_argument("--steps", type=int, default=500, help="solver steps")
    parser.add_argument("--w", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "cfg_tilted_rows.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sde = build(compose("sample", ["sde=vp"]), "sde")
    rows = []
    print("| problem | solver | w | TV to q_w | floor | TV to p(x\\|y) | floor | in class | spread "
          "(q_w) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (mixture, labels, label) in PROBLEMS.items():
        for solver_name in SOLVERS:
            solver = build(compose("sample", [f"solver={solver_name}"]), "solver")
            for w in args.w:
                start = time.perf_counter()
                r = cfg_against_exact(
                    mixture, labels, label, w, sde, solver, n=args.n, steps=args.steps, seed=0
                )
                r.update(problem=name, solver=solver_name, n=args.n, steps=args.steps,
                         seconds=time.perf_counter() - start)  # fmt: skip
                rows.append(r)
                print(
                    f"| {name} | {solver_name} | {w:g} | {r['tv_tilted']:.3f} | "
                    f"{r['floor_tilted']:.3f} | {r['tv_cond']:.3f} | {r['floor_cond']:.3f} | "
                    f"{r['in_class']:.3f} | {r['spread']:.3f} ({r['spread_tilted']:.3f}) |",
                    flush=True,
                )
    meta = {"sde": "vp", "python": platform.python_version(), "torch": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
