"""Quality per score evaluation of our deterministic fast samplers on exact-score 2-D mixtures.

    python benchmarks/fast_samplers_benchmark.py                 # each solver on its config's grid
    python benchmarks/fast_samplers_benchmark.py --grids all     # sweep the time grids as well
    python benchmarks/fast_samplers_benchmark.py --solvers unipc --nfe 10 --bins 64 32

For every solver config (``conf/solver/<name>.yaml``), SDE, mixture and NFE budget it samples
``--n`` points from the probability-flow ODE with the mixture's exact score and prints a
Markdown row: the total variation of the samples' 2-D histogram to the exact law of x at the
SDE's eps (``tv_to_mixture``), the metric's own floor at that n and bins, and their ratio
(about 1 for a perfect sampler). The step count is the largest whose NFE fits the budget
(NFE = a * steps + b, measured on a small batch), so the NFE column is the real count.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sde_diffusion.datasets import eight_gaussians, unequal_mixture
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.sampling import sample
from sde_diffusion.sde import VESDE, VPSDE, SubVPSDE
from solvers.grids import KarrasGrid, LogSNRGrid, QuadraticGrid, UniformGrid

CONF = Path(__file__).resolve().parents[1] / "conf" / "solver"
SOLVERS = ["heun_karras", "dpm_solver_2", "dpm_solver_3", "dpm_solver_pp_2m", "dpm_solver_pp_3m",
           "unipc"]  # fmt: skip
SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
MIXTURES = {"eight_gaussians": eight_gaussians, "unequal_mixture": unequal_mixture}
GRIDS = {
    "uniform": UniformGrid(),
    "quadratic": QuadraticGrid(),
    "karras7": KarrasGrid(7.0),
    "logsnr": LogSNRGrid(),
    "logsnr[0.05,3]": LogSNRGrid(level_min=0.05, level_max=3.0),
    "logsnr[0.02,5]": LogSNRGrid(level_min=0.02, level_max=5.0),
    "logsnr[0.05,3]+0.1": LogSNRGrid(level_min=0.05, level_max=3.0, outer=0.1),
    "logsnr[0.02,5]+0.1": LogSNRGrid(level_min=0.02, level_max=5.0, outer=0.1),
    "logsnr[0.05,10]+0.3": LogSNRGrid(level_min=0.05, level_max=10.0, outer=0.3),
}


def grid_name(grid) -> str:
    for name, g in GRIDS.items():
        if g == grid:
            return name
    return repr(grid)


def steps_for_budget(sde, solver, grid, budget: int) -> int | None:
    """The most steps whose NFE fits the budget; NFE = a steps + b is measured on 4 samples."""
    score = lambda x, t: -x  # noqa: E731 (the cost model does not depend on the score)
    nfe = [sample(sde, score, solver, (4, 2), steps=s, grid=grid, dtype=torch.float64).nfe
           for s in (3, 4)]  # fmt: skip
    a, b = nfe[1] - nfe[0], nfe[0] - 3 * (nfe[1] - nfe[0])
    steps = (budget - b) // a
    return steps if steps >= 1 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--solvers", nargs="+", default=SOLVERS, help="conf/solver/*.yaml names")
    ap.add_argument("--sdes", nargs="+", default=list(SDES), choices=list(SDES))
    ap.add_argument("--mixtures", nargs="+", default=list(MIXTURES), choices=list(MIXTURES))
    ap.add_argument("--nfe", nargs="+", type=int, default=[5, 10, 20, 50])
    ap.add_argument(
        "--grids",
        nargs="+",
        default=["config"],
        help=f"'config' (each solver's), 'all', or names from {list(GRIDS)}",
    )
    ap.add_argument("--bins", nargs="+", type=int, default=[64], help="histogram bins per axis")
    ap.add_argument("--n", type=int, default=50_000, help="samples per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"# n={args.n}, {args.dtype}, seed {args.seed}, {torch.get_num_threads()} torch "
          f"thread(s), torch {torch.__version__}, {platform.machine()}")  # fmt: skip
    print("| solver | grid | SDE | mixture | NFE | bins | TV | floor | ratio | wall s |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for solver_name in args.solvers:
        solver = instantiate(OmegaConf.load(CONF / f"{solver_name}.yaml"))
        if args.grids == ["config"]:
            grids = [solver.grid]
        else:
            grids = (
                list(GRIDS.values()) if args.grids == ["all"] else [GRIDS[g] for g in args.grids]
            )
        for grid in grids:
            for sde_name in args.sdes:
                sde = SDES[sde_name]()
                for mix_name in args.mixtures:
                    mixture = MIXTURES[mix_name]()
                    target = mixture.at(sde.eps, sde)
                    for budget in args.nfe:
                        steps = steps_for_budget(sde, solver, grid, budget)
                        if steps is None:
                            continue
                        gen = torch.Generator().manual_seed(args.seed)
                        t0 = time.perf_counter()
                        res = sample(sde, mixture.score_fn(sde), solver, (args.n, 2), steps=steps,
                                     grid=grid, generator=gen, dtype=dtype)  # fmt: skip
                        wall = time.perf_counter() - t0
                        for bins in args.bins:
                            tv = tv_to_mixture(res.x, target, bins=bins)
                            ratio = tv.ratio if math.isfinite(tv.ratio) else float("nan")
                            print(f"| {solver_name} | {grid_name(grid)} | {sde_name} | {mix_name} "
                                  f"| {res.nfe} | {bins} | {tv.tv:.4f} | {tv.floor:.4f} "
                                  f"| {ratio:.2f} | {wall:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
