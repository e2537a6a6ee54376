"""Our PC predictors against the published score_sde predictors, on exact mixture scores.

    python benchmarks/reference_parity_benchmark.py --out parity.jsonl [--sdes vp,subvp,ve]
    python benchmarks/reference_parity_benchmark.py --table parity.jsonl

The reference code (score_sde_pytorch) is not a dependency. ``published_*`` below are our own
re-implementations of the *published update rules* (Song et al. 2021, appendix E/F, Eq. 45-47,
and the reference code's behaviour as documented there), not its code:

- times t_k = linspace(T, eps, N) (N points), each step of fixed dt = 1/N, with the discrete
  schedules beta_i = beta(i/(N-1))/N (VP) and sigma_i = sigma_min (sigma_max/sigma_min)^(i/(N-1))
  (VE), i = floor(t (N-1)/T);
- Euler-Maruyama: x - (f - g^2 s)/N + g sqrt(1/N) z (reverse time, dt = -1/N);
- reverse diffusion: x - f_i + G_i^2 s + G_i z, with (f_i, G_i) = ((sqrt(1-beta_i)-1) x,
  sqrt(beta_i)) for VP, (0, sqrt(sigma_i^2 - sigma_(i-1)^2)) for VE and the generic
  (f dt, g sqrt(dt)) for sub-VP;
- ancestral: VP (x + beta_i s)/sqrt(1 - beta_i) + sqrt(beta_i) z (Ho et al. 2020, sigma^2 =
  beta); VE x + (sigma_i^2 - sigma_(i-1)^2) s with variance sigma_(i-1)^2 (sigma_i^2 -
  sigma_(i-1)^2)/sigma_i^2 (sigma_(-1) = 0); none for sub-VP (the reference has none);
- the last step (at t = eps, one step past it) is noise-free: the reference returns x_mean.

Ours: ``PredictorCorrector(predictor, corrector="none", variance=...)`` through
``sde_diffusion.sample`` on the uniform grid of N steps from T to eps (N + 1 points, every step
with noise). Both start from the same prior draw. Metric: TV of a 60 x 60 histogram against the
exact bin masses of p_eps, over the exact-sample floor at that n (1.0 = indistinguishable).
Data: ``unequal_mixture`` (weights 0.6/0.3/0.1, stds 0.6/0.3-0.5/0.1). Float64, one thread.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch

from sde_diffusion.datasets import unequal_mixture
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.sampling import sample
from sde_diffusion.sde import VESDE, VPSDE, SubVPSDE
from solvers.grids import UniformGrid
from solvers.predictor_corrector import PredictorCorrector

DT = torch.float64
SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
OURS = [
    ("euler_maruyama", None),
    ("reverse_diffusion", "forward"),
    ("reverse_diffusion", "midpoint"),
    ("ancestral", "posterior"),
    ("ancestral", "forward"),
    ("ancestral", "midpoint"),
]
PUBLISHED = ["euler_maruyama", "reverse_diffusion", "ancestral"]


def published(sde, score, x: torch.Tensor, steps: int, kind: str, gen: torch.Generator):
    """The published predictor's N steps (see the module docstring); None if it has none."""
    n, N = x.shape[0], steps
    ts = torch.linspace(sde.T, sde.eps, N, dtype=DT)
    for k in range(N):
        t = ts[k]
        tb = t.expand(n)
        i = int(float(t) * (N - 1) / sde.T)
        s = score(x, tb)
        z = torch.randn(x.shape, generator=gen, dtype=DT)
        g = float(sde.diffusion(tb[:1]))
        if kind == "euler_maruyama":  # reverse drift f - g^2 s, dt = -1/N
            mean, std = x - (sde.drift(x, tb) - g**2 * s) / N, g / math.sqrt(N)
        elif isinstance(sde, VESDE):
            sig = [
                sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** (j / (N - 1)) for j in (i, i - 1)
            ]
            d = sig[0] ** 2 - (sig[1] ** 2 if i > 0 else 0.0)
            mean = x + d * s
            std = (
                math.sqrt(d)
                if kind == "reverse_diffusion"
                else math.sqrt((sig[0] ** 2 - d) * d) / sig[0]
            )
        elif type(sde) is VPSDE:
            b = (sde.beta_min + i / (N - 1) * (sde.beta_max - sde.beta_min)) / N
            if kind == "reverse_diffusion":
                mean = x - (math.sqrt(1 - b) - 1) * x + b * s
            else:
                mean = (x + b * s) / math.sqrt(1 - b)
            std = math.sqrt(b)
        elif kind == "reverse_diffusion":  # sub-VP: the generic discretisation f dt, g sqrt(dt)
            mean, std = x - sde.drift(x, tb) / N + g**2 / N * s, g / math.sqrt(N)
        else:
            return None
        x = mean + (std * z if k < N - 1 else 0.0)
    return x


def run(sde_name: str, steps: int, n: int, seed: int) -> list[dict]:
    sde, data = SDES[sde_name](), unequal_mixture(dtype=DT)
    score, target = data.score_fn(sde), data.at(sde.eps, sde)
    x_T = sde.prior_sample((n, 2), generator=torch.Generator().manual_seed(seed), dtype=DT)
    rows = []

    def add(who, predictor, variance, x, seconds):
        tv = tv_to_mixture(x, target, bins=60)
        rows.append(dict(sde=sde_name, steps=steps, n=n, seed=seed, who=who, predictor=predictor,
                         variance=variance, ratio=tv.ratio, tv=tv.tv, floor=tv.floor,
                         seconds=round(seconds, 2)))  # fmt: skip

    for predictor, variance in OURS:
        solver = PredictorCorrector(predictor=predictor, corrector="none", variance=variance)
        start = time.perf_counter()
        x = sample(sde, score, solver, (n, 2), steps=steps, grid=UniformGrid(), dtype=DT,
                   x_init=x_T, generator=torch.Generator().manual_seed(seed + 1)).x  # fmt: skip
        add("ours", predictor, variance, x, time.perf_counter() - start)
    for kind in PUBLISHED:
        start = time.perf_counter()
        x = published(sde, score, x_T.clone(), steps, kind, torch.Generator().manual_seed(seed + 1))
        if x is not None:
            add("published", kind, None, x, time.perf_counter() - start)
    return rows


def table(path: str) -> str:
    rows = [json.loads(line) for line in open(path)]
    cols = sorted({(r["steps"], r["n"]) for r in rows})
    keys = list(dict.fromkeys((r["who"], r["predictor"], r["variance"]) for r in rows))
    head = (
        "| predictor (no corrector) | "
        + " | ".join(f"{sde} N={s}" for sde in SDES for s, _ in cols)
        + " |"
    )
    out = [head, "|---|" + "---:|" * (len(SDES) * len(cols))]
    for who, pred, var in keys:
        cells = []
        for sde in SDES:
            for s, n_ in cols:
                r = [x["ratio"] for x in rows if (x["who"], x["predictor"], x["variance"], x["sde"],
                     x["steps"], x["n"]) == (who, pred, var, sde, s, n_)]  # fmt: skip
                cells.append(f"{sum(r) / len(r):.2f}" if r else "–")
        label = f"{who}: {pred}" + (f" ({var})" if var else "")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="reference_parity.jsonl")
    parser.add_argument("--sdes", default="vp,subvp,ve")
    parser.add_argument("--plan", default="100:50000:0,100:50000:1,1000:20000:0",
                        help="steps:n:seed,... runs")  # fmt: skip
    parser.add_argument("--table", default=None, help="print the markdown table of a rows file")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    torch.set_num_threads(1)
    print(f"# {platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}")
    with open(args.out, "a") as f:
        for sde_name in args.sdes.split(","):
            for item in args.plan.split(","):
                steps, n, seed = (int(v) for v in item.split(":"))
                for row in run(sde_name, steps, n, seed):
                    f.write(json.dumps(row) + "\n")
                    f.flush()
                    print(row["sde"], row["steps"], row["who"], row["predictor"],
                          row["variance"], f"{row['ratio']:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
