"""Our samplers against k-diffusion's and scipy's RK45 on the same exact score, per NFE budget.

    python benchmarks/peers_benchmark.py --kdiffusion-path /path/to/site  # full run
    python benchmarks/peers_benchmark.py --quick                          # a smoke run
    python benchmarks/peers_benchmark.py --kdiffusion-path SITE --rows r.json --figure f.png
    python benchmarks/peers_benchmark.py --from-rows r.json --figure f.png  # figure only

For each forward SDE (VP, sub-VP, VE), each exact-score 2-D mixture (eight Gaussians, the
unequal mixture) and each NFE budget (5, 10, 20, 50), it draws ``--n`` samples with every
sampler and prints a Markdown table of the total variation of their 32 x 32 histogram to the
exact law of x at eps, the metric's floor for exact samples at that n, and the ratio TV/floor
(about 1: indistinguishable from exact sampling), followed by a summary of the worst ratio
per sampler and budget. NFE counts every score evaluation actually made. Our fixed-step
samplers (``--ours``: the deterministic fast samplers and ``dpm_solver_pp_sde``) run their
``conf/solver`` configs, grid included, at the most steps whose NFE fits the budget.
``--rows`` saves every row as JSON; ``--figure`` draws the worst ratio against NFE with
:func:`sde_diffusion.plot.quality_vs_nfe` (deterministic and stochastic samplers in two panels).

k-diffusion (Crowson; ``k-diffusion`` on PyPI, 0.1.1.post1) is an optional benchmark
dependency, never a runtime one. Its package ``__init__`` imports clip (needs setuptools<81)
and torchvision (whose wheel fails beside a CPU torch 2.13), so this script executes
``k_diffusion/sampling.py`` alone under an empty parent package, a stub ``k_diffusion.utils``
(``append_dims``) and, if missing, a stub ``torchdiffeq`` (unused here). Install it with
``pip install --no-deps --target /tmp/kdiff k-diffusion==0.1.1.post1 torchdiffeq`` and pass
``--kdiffusion-path /tmp/kdiff``; without it the table holds our samplers and scipy only.

The exact score is handed to k-diffusion as its denoiser D(x_k, sigma) in its variable
x_k = x / alpha(t) = x_0 + sigma n, sigma = sigma(t)/alpha(t) (the SDE's ``noise_level``):
D = E[x_0 | x_k] = x_k + sigma^2 grad log p_k(x_k), and p_k(x_k) = alpha^d p_t(alpha x_k), so
D = x_k + sigma^2 alpha score(alpha x_k, t(sigma)), with t(sigma) found by bisection on
``noise_level``. k-diffusion runs on its Karras grid (rho = 7) from sigma_max = noise_level(T)
to sigma_min = noise_level(eps), starting from our prior draw x_T / alpha(T). With
``--kd-final zero`` (default, k-diffusion's own ``get_sigmas_karras``) the grid ends with
sigma = 0, its last step landing on the denoised data; with ``--kd-final sigma_min`` it
stops at sigma_min and x = alpha(eps) x_k. Both are compared with the exact law at eps (at 32
bins the law at eps and the data law differ by far less than the floor: sigma(eps) <= 0.011).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import sys
import time
import types
import warnings
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sde_diffusion.datasets import eight_gaussians, unequal_mixture
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.sampling import sample
from sde_diffusion.sde import VESDE, VPSDE, SubVPSDE
from solvers.scipy_ode import ScipyODE

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
MIXTURES = {"eight_gaussians": eight_gaussians, "unequal": unequal_mixture}
CONF = Path(__file__).resolve().parents[1] / "conf" / "solver"
# k-diffusion sampler -> score evaluations per step (the last step, to sigma = 0, costs 1)
KD_SAMPLERS = {
    "euler": 1,
    "euler_ancestral": 1,
    "heun": 2,
    "dpm_2": 2,
    "lms": 1,
    "dpmpp_2s_ancestral": 2,
    "dpmpp_sde": 2,
    "dpmpp_2m": 1,
    "dpmpp_2m_sde": 1,
    "dpmpp_3m_sde": 1,
}
KD_STOCHASTIC = {
    "euler_ancestral",
    "dpmpp_2s_ancestral",
    "dpmpp_sde",
    "dpmpp_2m_sde",
    "dpmpp_3m_sde",
}
OURS = ["heun_karras", "dpm_solver_2", "dpm_solver_3", "dpm_solver_pp_2m", "dpm_solver_pp_3m",
        "unipc", "dpm_solver_pp_sde"]  # fmt: skip


def load_kdiffusion_sampling(path: str | None) -> types.ModuleType | None:
    """Execute ``k_diffusion/sampling.py`` alone under a stub parent package (see the docstring)."""
    if path is not None:
        folder = Path(path) / "k_diffusion" if (Path(path) / "k_diffusion").is_dir() else Path(path)
    else:
        spec = importlib.util.find_spec("k_diffusion")  # finds the folder, runs no __init__
        if spec is None or spec.submodule_search_locations is None:
            return None
        folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / "sampling.py").is_file():
        raise FileNotFoundError(f"no k_diffusion/sampling.py under {folder}")
    if str(folder.parent) not in sys.path:
        sys.path.append(str(folder.parent))  # for a torchdiffeq installed beside it
    package = types.ModuleType("k_diffusion")
    package.__path__ = [str(folder)]
    utils = types.ModuleType("k_diffusion.utils")

    def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
        return x[(...,) + (None,) * (target_dims - x.ndim)]

    utils.append_dims = append_dims
    package.utils = utils
    sys.modules["k_diffusion"], sys.modules["k_diffusion.utils"] = package, utils
    if importlib.util.find_spec("torchdiffeq") is None:
        stub = types.ModuleType("torchdiffeq")

        def odeint(*args, **kwargs):
            raise RuntimeError("torchdiffeq is not installed (stub for k_diffusion.sampling)")

        stub.odeint = odeint
        sys.modules["torchdiffeq"] = stub
    spec = importlib.util.spec_from_file_location("k_diffusion.sampling", folder / "sampling.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["k_diffusion.sampling"] = module
    spec.loader.exec_module(module)
    package.sampling = module
    return module


def time_of_level(sde, level: float) -> float:
    """t with noise_level(t) = level, by bisection on [0, T] (noise_level increases in t)."""
    lo, hi = 0.0, sde.T
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(sde.noise_level(torch.tensor([mid], dtype=torch.float64))) > level:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


class KDenoiser:
    """D(x_k, sigma) = x_k + sigma^2 alpha score(alpha x_k, t(sigma)), counting evaluations."""

    def __init__(self, sde, score) -> None:
        self.sde, self.score, self.nfe, self._t = sde, score, 0, {}

    def __call__(self, xk: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        level = float(sigma.reshape(-1)[0])  # k-diffusion passes one sigma for the batch
        if level not in self._t:
            self._t[level] = time_of_level(self.sde, level)
        t = torch.full((xk.shape[0],), self._t[level], dtype=xk.dtype, device=xk.device)
        alpha = self.sde.marginal(t)[0][:, None]
        return xk + level**2 * alpha * self.score(alpha * xk, t)


def run_kdiffusion(kd, name, sde, score, x_T, budget, args):
    """k-diffusion's sample_<name> on its Karras grid at the most steps within the budget."""
    eps, final, seed = sde.eps, args.kd_final, args.seed + 1
    per_step = KD_SAMPLERS[name]
    steps = budget if per_step == 1 else (budget + 1) // 2
    if final == "sigma_min" and per_step == 2:
        steps = budget // 2
    if steps < 1:
        return None
    level = sde.noise_level(torch.tensor([sde.T, eps], dtype=torch.float64))
    if final == "zero":
        sigmas = kd.get_sigmas_karras(steps, float(level[1]), float(level[0]))
    else:
        sigmas = kd.get_sigmas_karras(steps + 1, float(level[1]), float(level[0]))[:-1]
    sigmas = sigmas.to(x_T.dtype)
    alpha_T = float(sde.marginal(torch.tensor([sde.T], dtype=torch.float64))[0])
    model = KDenoiser(sde, score)
    torch.manual_seed(seed)  # k-diffusion draws from the global generator
    xk = getattr(kd, f"sample_{name}")(model, x_T / alpha_T, sigmas, disable=True)
    alpha_eps = float(sde.marginal(torch.tensor([eps], dtype=torch.float64))[0])
    return (xk if final == "zero" else alpha_eps * xk), model.nfe


def steps_for_budget(
    solver, sde, score, budget: int, denoise: bool, event_shape: tuple[int, ...] = (2,)
) -> int | None:
    """The most fixed steps whose NFE (measured on 4 samples of ``event_shape``) stays within
    the budget; ``None`` if none does."""
    best = None
    for steps in range(1, budget + 1):
        try:
            with warnings.catch_warnings():  # e.g. a multistep order lowered at 1 step
                warnings.simplefilter("ignore")
                res = sample(sde, score, solver, (4, *event_shape), steps=steps,
                             dtype=torch.float64, denoise=denoise)  # fmt: skip
        except ValueError:  # too few steps for a multistep order: try more
            continue
        if res.nfe > budget:
            break
        best = steps
    return best


def run_scipy(tol: float, sde, score, x_T):
    """The scipy RK45 recipe on the probability-flow ODE at rtol = atol = tol."""
    res = sample(sde, score, ScipyODE(rtol=tol, atol=tol), x_T.shape, x_init=x_T, dtype=x_T.dtype)
    return res.x, res.nfe


def ours(cfg: str, sde, score, x_T, budget: int | None, args):
    """Run conf/solver/<cfg>.yaml from x_T: at the most steps within the budget, or adaptive."""
    solver = instantiate(OmegaConf.load(CONF / f"{cfg}.yaml"))
    steps, denoise = None, args.denoise and budget is not None
    if budget is not None:
        steps = steps_for_budget(solver, sde, score, budget, denoise)
        if steps is None:
            return None
    gen = torch.Generator().manual_seed(args.seed + 1)
    res = sample(sde, score, solver, x_T.shape, steps=steps, x_init=x_T, generator=gen,
                 dtype=torch.float64, denoise=denoise)  # fmt: skip
    return res.x, res.nfe


def figure(rows: list[dict], path: str) -> None:
    """Worst TV/floor over SDEs and mixtures against NFE (budget; adaptive: their largest NFE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    from sde_diffusion.plot import quality_vs_nfe

    worst: dict[tuple[str, str, bool, float], tuple[float, int]] = {}
    for r in rows:
        key = (r["family"], r["label"], r["stochastic"], r["budget"] or r["tol"])
        ratio, nfe = worst.get(key, (0.0, 0))
        worst[key] = (max(ratio, r["ratio"]), max(nfe, r["nfe"] if r["budget"] == 0 else 0))
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5), sharey=True)
    for ax, stochastic in zip(axes, (False, True), strict=True):
        pts = [{"sde": fam, "label": lab, "nfe": budget if nfe == 0 else nfe, "tv": ratio,
                "tv_floor": 1.0, "status": "ok" if math.isfinite(ratio) else "failed"}
               for (fam, lab, st, budget), (ratio, nfe) in worst.items() if st == stochastic]  # fmt: skip
        quality_vs_nfe(pts, metric="tv", ax=ax)
        mine, peers = iter(plt.cm.tab10.colors), iter(plt.cm.Dark2.colors + plt.cm.Set1.colors)
        for line in ax.get_lines():
            if line.get_label().startswith("ours"):
                line.set(lw=2.4, ms=5, color=next(mine))
            elif line.get_label() != "noise floor":
                line.set(ls="--", lw=1, ms=3, alpha=0.85, color=next(peers))
        ax.axhline(1.25, color="k", ls=":", lw=1, label="target 1.25")
        ax.yaxis.set_major_locator(FixedLocator([1, 1.25, 1.5, 2, 3, 5, 10, 20, 30]))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter("{x:g}")
        kind = "stochastic (draw noise)" if stochastic else "deterministic (probability-flow ODE)"
        ax.set(title=kind, ylabel="worst TV / floor over VP, sub-VP, VE x 2 mixtures")
        ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.suptitle("Exact-score 2-D mixtures, n = 50,000, 32 x 32 bins (1 = exact sampling); "
                 "adaptive samplers at their largest NFE")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000, help="samples per run")
    ap.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50])
    ap.add_argument("--sde", nargs="+", choices=sorted(SDES), default=["vp", "subvp", "ve"])
    ap.add_argument("--mixture", nargs="+", choices=sorted(MIXTURES), default=sorted(MIXTURES))
    ap.add_argument("--peers", nargs="*", default=list(KD_SAMPLERS), choices=list(KD_SAMPLERS))
    ap.add_argument("--ours", nargs="*", default=OURS, help="fixed-step configs")
    ap.add_argument("--adaptive", nargs="*", default=["gotta_go_fast"], help="adaptive configs")
    ap.add_argument("--scipy-tol", type=float, nargs="*", default=[1e-2, 1e-3])
    ap.add_argument("--kdiffusion-path", default=None, help="folder holding k_diffusion/")
    ap.add_argument("--kd-final", choices=["zero", "sigma_min"], default="zero")
    ap.add_argument("--denoise", action="store_true", help="our fixed-step runs end with Tweedie")
    ap.add_argument("--bins", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="n = 5000, VP only, budgets 10 and 20")
    ap.add_argument("--rows", default=None, help="save every row to this JSON file")
    ap.add_argument("--figure", default=None, help="save the quality-vs-NFE figure here")
    ap.add_argument("--from-rows", default=None, help="only draw --figure from saved rows")
    args = ap.parse_args()
    if args.from_rows:
        figure(json.loads(Path(args.from_rows).read_text()), args.figure or "quality_vs_nfe.png")
        return
    if args.quick:
        args.n, args.sde, args.nfe = 5000, ["vp"], [10, 20]

    torch.set_num_threads(1)  # small tensors, and other work shares the machine
    kd = None
    if args.peers:
        try:
            kd = load_kdiffusion_sampling(args.kdiffusion_path)
        except Exception as err:  # noqa: BLE001 - report and go on without the peer
            print(f"# k-diffusion not loaded ({type(err).__name__}: {err})")
        if kd is None:
            print("# k-diffusion not found: pass --kdiffusion-path (see the docstring)")
    print(f"# n={args.n}, float64, {args.bins}x{args.bins} bins, seed {args.seed}, torch "
          f"{torch.__version__}, {platform.machine()}, 1 thread; k-diffusion final sigma: "
          f"{args.kd_final}; our fixed-step runs denoise: {args.denoise}")  # fmt: skip
    print("| sampler | SDE | mixture | NFE | TV | floor | TV/floor | wall s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    rows: list[dict] = []
    stochastic = {c: instantiate(OmegaConf.load(CONF / f"{c}.yaml")).stochastic for c in args.ours}

    def run(name: str, budget: int, fn, *fn_args, family: str, label: str, noisy: bool, tol=0.0):
        """Time fn(*fn_args) -> (x, nfe) or None, and print and keep its row."""
        start = time.perf_counter()
        out = fn(*fn_args)
        if out is None:
            return
        x, nfe = out
        tv = tv_to_mixture(x, target, bins=args.bins)
        wall = time.perf_counter() - start
        print(f"| {name} | {sde_name} | {mix_name} | {nfe} | {tv.tv:.4f} | {tv.floor:.4f} "
              f"| {tv.ratio:.2f} | {wall:.1f} |", flush=True)  # fmt: skip
        rows.append({"name": name, "family": family, "label": label, "stochastic": noisy,
                     "sde": sde_name, "mixture": mix_name, "budget": budget, "tol": tol,
                     "nfe": nfe, "tv": tv.tv, "tv_floor": tv.floor, "ratio": tv.ratio,
                     "wall_time_s": wall})  # fmt: skip

    for sde_name in args.sde:
        sde = SDES[sde_name]()
        for mix_name in args.mixture:
            mixture = MIXTURES[mix_name](dtype=torch.float64)
            score, target = mixture.score_fn(sde), mixture.at(sde.eps, sde)
            gen = torch.Generator().manual_seed(args.seed)
            x_T = sde.prior_sample((args.n, 2), generator=gen, dtype=torch.float64)
            for b in args.nfe:
                for cfg in args.ours:
                    run(cfg, b, ours, cfg, sde, score, x_T, b, args,
                        family="ours", label=cfg, noisy=stochastic[cfg])  # fmt: skip
                for name in args.peers if kd is not None else []:
                    run(f"k-diffusion {name}", b, run_kdiffusion, kd, name, sde, score, x_T, b,
                        args, family="k-diffusion", label=name, noisy=name in KD_STOCHASTIC)  # fmt: skip
            for cfg in args.adaptive:
                run(cfg, 0, ours, cfg, sde, score, x_T, None, args, family="ours", label=cfg,
                    noisy=True)  # fmt: skip
            for tol in args.scipy_tol:
                run(f"scipy RK45 tol={tol:g}", 0, run_scipy, tol, sde, score, x_T,
                    family="scipy", label="RK45", noisy=False, tol=tol)  # fmt: skip

    print("\n# worst TV/floor over the SDEs and mixtures; adaptive samplers at their own NFE")
    worst: dict[tuple[str, int], float] = {}
    nfes: dict[str, list[int]] = {}
    for r in rows:
        key = (r["name"], r["budget"])
        worst[key] = max(worst.get(key, 0.0), r["ratio"])
        nfes.setdefault(r["name"], []).append(r["nfe"])
    kinds = {r["name"]: "stochastic" if r["stochastic"] else "deterministic" for r in rows}
    budgets = sorted({b for _, b in worst})
    head = " | ".join(f"NFE<={b}" if b else "adaptive (NFE)" for b in budgets)
    print(f"| sampler | kind | {head} |\n|---|---|" + "---:|" * len(budgets))
    for name in dict.fromkeys(k[0] for k in worst):
        cells = []
        for b in budgets:
            c = worst.get((name, b))
            span = f" ({min(nfes[name])}-{max(nfes[name])})" if b == 0 and c is not None else ""
            cells.append("" if c is None else f"{c:.2f}{span}")
        print(f"| {name} | {kinds[name]} | " + " | ".join(cells) + " |")
    if args.rows:
        Path(args.rows).write_text(json.dumps(rows, indent=0))
    if args.figure:
        figure(rows, args.figure)
    if not math.isfinite(max(worst.values(), default=0.0)):
        sys.exit(1)


if __name__ == "__main__":
    main()
