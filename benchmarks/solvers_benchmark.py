"""Benchmark every solver on an exact-score Gaussian mixture: distance to the truth, NFE, time.

    python benchmarks/solvers_benchmark.py --sde vp --n 20000 --repeats 3

Prints a Markdown table: for each solver and step count (or tolerance), the total variation
of the samples' histogram to the exact marginal at eps, the metric's own noise floor at that
sample size, the NFE and the median wall time over ``--repeats`` runs. It includes our
Euler–Maruyama against torchsde's Euler at equal steps, and our on-device Dormand–Prince
against the scipy RK45 recipe at equal tolerance.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from sde_diffusion.datasets import eight_gaussians
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.sampling import sample
from sde_diffusion.sde import VESDE, VPSDE, SubVPSDE
from solvers.dopri5 import Dopri5
from solvers.euler_maruyama import EulerMaruyama
from solvers.explicit_rk import RK4, Euler, Heun
from solvers.predictor_corrector import PredictorCorrector
from solvers.scipy_ode import ScipyODE
from solvers.torchsde_backend import TorchSDE

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


def cases(quick: bool):
    steps = [100, 500] if quick else [50, 100, 250, 500, 1000]
    ode_steps = [10, 25, 50] if quick else [10, 25, 50, 100, 200]
    tols = [1e-3, 1e-5] if quick else [1e-2, 1e-3, 1e-4, 1e-5]
    for n in steps:
        yield "EulerMaruyama (ours)", EulerMaruyama(), n
        yield "torchsde euler", TorchSDE(method="euler"), n
    for n in steps[:-1]:
        yield "PC reverse-diffusion + annealed Langevin", PredictorCorrector(), n
        yield (
            "PC reverse-diffusion + Langevin (batch step, reference)",
            PredictorCorrector(corrector="langevin", step_size="batch"),
            n,
        )
        yield "PC ancestral, no corrector", PredictorCorrector("ancestral", "none"), n
    for n in ode_steps:
        yield "ODE Euler", Euler(), n
        yield "ODE Heun", Heun(), n
        yield "ODE RK4", RK4(), n
    for tol in tols:
        yield f"Dopri5 (ours, torch) tol={tol:g}", Dopri5(rtol=tol, atol=tol), None
        yield f"scipy RK45 tol={tol:g}", ScipyODE(rtol=tol, atol=tol), None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sde", choices=sorted(SDES), default="vp")
    ap.add_argument("--n", type=int, default=20000, help="samples per run")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per case (median)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer cases")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sde = SDES[args.sde]()
    mixture = eight_gaussians()
    score = mixture.score_fn(sde)
    target = mixture.at(sde.eps, sde)  # the exact law of x at the end time eps
    print(f"# {args.sde} SDE, eight Gaussians, n={args.n}, float32, device={device}")
    print(
        f"# machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    print("| solver | steps | NFE | TV | TV floor | TV/floor | wall s (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, solver, steps in cases(args.quick):
        times, res = [], None
        for r in range(args.repeats):
            gen = torch.Generator(device=device).manual_seed(r)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            res = sample(sde, score, solver, (args.n, 2), steps=steps, generator=gen, device=device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        tv = tv_to_mixture(res.x.double().cpu(), target)
        print(
            f"| {name} | {steps if steps else '-'} | {res.nfe} | {float(tv.tv):.4f} | "
            f"{float(tv.floor):.4f} | {float(tv.ratio):.2f} | {statistics.median(times):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
