"""UniPC on its own grid against UniPC on a grid tuned to the score, over several prior draws.

    python benchmarks/tuned_grid_benchmark.py                      # full run, ~6 min on 2 cores
    python benchmarks/tuned_grid_benchmark.py --quick              # a smoke run
    python benchmarks/tuned_grid_benchmark.py --levels grids.json  # also save the tuned levels
    python benchmarks/tuned_grid_benchmark.py --from-levels docs/tuned_grids.json --seeds 4 5 6 7

For each forward SDE (VP, sub-VP, VE), each exact-score 2-D mixture (eight Gaussians, the
unequal mixture) and each NFE budget, :func:`sde_diffusion.tune_grid` tunes
``conf/solver/unipc.yaml``'s grid on a pilot of prior draws (``--pilot``, seed 1000; the cost
is reported in score evaluations per pilot draw and seconds). Then UniPC on its own grid, on
the tuned grid and on 200 steps of its own grid (a converged solve: the metric's own spread
for these draws) samples ``--n`` points from each of the prior draws ``--seeds`` (seed 0 is
the draw of ``peers_benchmark.py``), and the table gives TV/floor of each (32 x 32 bins, the
exact law of x at eps). The summary gives the worst ratio over the SDEs and mixtures per seed.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sde_diffusion import tune_grid
from sde_diffusion.datasets import eight_gaussians, unequal_mixture
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.sampling import sample
from sde_diffusion.sde import VESDE, VPSDE, SubVPSDE
from solvers.grids import TabulatedGrid

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
MIXTURES = {"eight_gaussians": eight_gaussians, "unequal": unequal_mixture}
CONF = Path(__file__).resolve().parents[1] / "conf" / "solver"
REFERENCE_STEPS = 200


def tv_ratios(solver, sde, score, target, draws, steps, grid, bins) -> list[float]:
    """TV/floor of ``solver`` at ``steps`` (on ``grid`` or its own) from each prior draw."""
    out = []
    for x_T in draws:
        x = sample(sde, score, solver, x_T.shape, steps=steps, grid=grid, x_init=x_T,
                   dtype=torch.float64).x  # fmt: skip
        out.append(tv_to_mixture(x, target, bins=bins).ratio)
    return out


def fmt(vals: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in vals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nfe", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--pilot", type=int, default=4096)
    ap.add_argument("--max-evals", type=int, default=1600)
    ap.add_argument("--bins", type=int, default=32)
    ap.add_argument("--levels", help="save the tuned noise levels to this JSON file")
    ap.add_argument("--from-levels", help="evaluate the levels of this JSON file, no tuning")
    ap.add_argument("--quick", action="store_true", help="n=5000, pilot 512, 100 evals, 1 seed")
    args = ap.parse_args()
    if args.quick:
        args.n, args.pilot, args.max_evals, args.seeds, args.nfe = 5000, 512, 100, [0], [10]
    solver = instantiate(OmegaConf.load(CONF / "unipc.yaml"))
    stored = json.loads(Path(args.from_levels).read_text()) if args.from_levels else {}
    how = (f"levels from {args.from_levels}" if args.from_levels else
           f"pilot {args.pilot} (seed 1000), <= {args.max_evals} objective evaluations")  # fmt: skip
    print(f"# n={args.n}, float64, {args.bins}x{args.bins} bins, prior seeds {args.seeds}, {how}; "
          f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads\n")  # fmt: skip
    seeds = " / ".join(str(s) for s in args.seeds)
    print(f"| SDE | mixture | NFE | own grid (seeds {seeds}) | tuned grid | {REFERENCE_STEPS} "
          "steps (converged) | tuning: NFE per pilot draw, s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    worst: dict[tuple[str, int], list[float]] = {}
    saved: dict[str, list[float]] = {}
    for sde_name, sde_cls in SDES.items():
        sde = sde_cls()
        for mix_name, mix_fn in MIXTURES.items():
            mixture = mix_fn(dtype=torch.float64)
            score, target = mixture.score_fn(sde), mixture.at(sde.eps, sde)
            draws = [
                sde.prior_sample(
                    (args.n, 2), generator=torch.Generator().manual_seed(s), dtype=torch.float64
                )  # fmt: skip
                for s in args.seeds
            ]

            def ratios(steps: int, grid=None, s=(sde, score, target, draws)) -> list[float]:
                return tv_ratios(solver, *s, steps, grid, args.bins)

            converged = ratios(REFERENCE_STEPS)
            w = worst.setdefault(("converged", REFERENCE_STEPS), [0.0] * len(args.seeds))
            worst[("converged", REFERENCE_STEPS)] = [
                max(a, b) for a, b in zip(w, converged, strict=True)
            ]
            for nfe in args.nfe:
                key = f"{sde_name}/{mix_name}/{nfe}"
                start = time.perf_counter()
                if args.from_levels:
                    grid, cost = TabulatedGrid(tuple(stored[key])), "stored"
                else:
                    tuned = tune_grid(sde, score, solver, nfe, (args.pilot, 2),
                                      max_evals=args.max_evals)  # fmt: skip
                    grid, saved[key] = tuned.grid, list(tuned.levels)
                    cost = f"{tuned.nfe:,}, {time.perf_counter() - start:.0f}"
                cells = {"own": ratios(nfe), "tuned": ratios(nfe, grid)}
                for key, vals in cells.items():
                    w = worst.setdefault((key, nfe), [0.0] * len(args.seeds))
                    worst[(key, nfe)] = [max(a, b) for a, b in zip(w, vals, strict=True)]

                print(f"| {sde_name} | {mix_name} | {nfe} | {fmt(cells['own'])} | "
                      f"{fmt(cells['tuned'])} | {fmt(converged)} | "
                      f"{cost} |", flush=True)  # fmt: skip

    print(f"\n# worst TV/floor over the SDEs and mixtures, per prior seed ({seeds})\n")
    print("| UniPC grid | NFE | worst per seed | worst of all |")
    print("|---|---|---|---|")
    for (key, nfe), vals in sorted(worst.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"| {key} | {nfe} | {fmt(vals)} | {max(vals):.2f} |")
    if args.levels:
        Path(args.levels).write_text(json.dumps(saved, indent=1) + "\n")


if __name__ == "__main__":
    main()
