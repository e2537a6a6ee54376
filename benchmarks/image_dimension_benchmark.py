"""Fixed-step samplers with the exact score in image dimension (64, 784, 3,072): issue 14.

    python benchmarks/image_dimension_benchmark.py --kdiffusion-path /tmp/kdiff   # full run
    python benchmarks/image_dimension_benchmark.py --quick                        # smoke run
    python benchmarks/image_dimension_benchmark.py --rows rows.json               # keep rows
    python benchmarks/image_dimension_benchmark.py --seeds 0 1 2 3                # 4 draws

Presets: :func:`sde_diffusion.datasets.digit_mixture` at 1x8x8, 1x28x28 and 3x32x32, isotropic
("iso") and with one diagonal component ("aniso"). SDEs: VP, sub-VP, VE. For each (preset,
SDE), one prior draw of ``--n`` samples feeds every sampler:
- ours, from their ``conf/solver`` configs (grid included; ``name+key=value`` overrides one) at the most steps whose NFE fits the
  budget: deterministic at <= ``--det-nfe`` (default 10), stochastic at <= ``--sto-nfe`` (20);
- k-diffusion's samplers (``--kdiffusion-path``; see ``peers_benchmark.py`` for the install)
  on their Karras rho = 7 grid from noise_level(T) to noise_level(eps), through a denoiser
  wrapper of the same exact score, deterministic at <= 10 and stochastic at <= 20 NFE.
Each sampler is judged against the law at its own end point
(:mod:`sde_diffusion.metrics.exact_measures`): ours stop at eps and meet ``mixture.at(eps,
sde)``; k-diffusion with ``--kd-final sigma_min`` (default) stops at noise_level(eps) and meets
the same law, with ``--kd-final zero`` its last step lands on sigma = 0 (a Tweedie denoising)
and it meets the data law. The table gives each of the four exact measures divided by its floor
at the same n (1 = exact sampling) and the worst of the four; the summary, the worst ratio
over all presets and SDEs per sampler. Rows "exact p_eps" (exact samples of the target: the
measures' own spread) and "data law" (exact samples of p_0 judged against p_eps: what the
residual noise at eps alone costs) frame it.

One prior draw is one sample of each ratio: exact samples themselves spread about 0.5-1.5 around
1 at n = 2,000. ``--seeds`` repeats every run on further draws (prior, sampler noise and the
log p reference; a tuned grid depends on the model only and is reused), and the last table
gives each measure's mean ratio over the draws, the sampler's systematic error without the
draw's luck.

The score is the mixture's exact score evaluated with matrix products (|x - a mu_k|^2 expanded;
checked against ``GaussianMixture.score`` to 1e-9 at start), float64, one thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sde_diffusion.datasets import DIGIT_MIXTURE_SHAPES, digit_mixture
from sde_diffusion.metrics.exact_measures import (
    MEASURES,
    exact_floors,
    exact_measures,
    posterior_statistics,
)
from sde_diffusion.mixture import GaussianMixture
from sde_diffusion.sampling import sample
from sde_diffusion.sampling.auto_grid import auto_grid, mixture_key
from sde_diffusion.sde import VESDE, VPSDE, SubVPSDE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_benchmark import (  # noqa: E402
    KD_SAMPLERS,
    load_kdiffusion_sampling,
    steps_for_budget,
    time_of_level,
)

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
CONF = Path(__file__).resolve().parents[1] / "conf" / "solver"
OURS_DET = ["unipc", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "heun_karras"]
OURS_STO = ["dpm_solver_pp_sde", "euler_maruyama", "pc"]
KD_DET = ["euler", "heun", "dpm_2", "lms", "dpmpp_2m"]
KD_STO = ["euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"]
SHORT = {"mode_tv": "modes", "radius_ks": "radius", "mean_error": "means", "logp_ks": "log p"}


class FastScore:
    """The exact score of an isotropic or diagonal mixture, with matrix products.

    grad log p_t(x) = sum_k r_k (a mu_k - x) / v_k, v_k = a^2 s_k^2 + sigma^2 (per axis),
    |x - a mu_k|^2_v = x^2 . 1/v_k - 2 x . a mu_k / v_k + a^2 mu_k^2 . 1/v_k: two (B, D) x (D, K)
    products instead of a (B, K, D) array. Falls back to ``mixture.score`` for per-sample times.
    """

    def __init__(self, mixture: GaussianMixture, sde) -> None:
        if mixture.kind == "full":
            raise ValueError("FastScore handles isotropic and diagonal mixtures")
        self.mixture, self.sde, self.nfe = mixture, sde, 0
        self.mu = mixture.means.reshape(mixture.n_components, mixture.dim)
        self.var0 = mixture.component_stds() ** 2  # (K, D)
        self.log_w = mixture.weights.log()

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1)
        if t.numel() > 1 and not bool((t == t[0]).all()):
            return self.mixture.score(x, t, self.sde)
        alpha, sigma = self.sde.marginal(t[:1].to(torch.float64))
        a, s = float(alpha.reshape(())), float(sigma.reshape(()))
        inv_v = 1.0 / (a * a * self.var0 + s * s)  # (K, D)
        amu_v = a * self.mu * inv_v
        xf = x.reshape(x.shape[0], -1).to(torch.float64)
        maha = (xf * xf) @ inv_v.T - 2 * xf @ amu_v.T + (a * self.mu * amu_v).sum(-1)
        logits = self.log_w + 0.5 * inv_v.log().sum(-1) - 0.5 * maha
        r = torch.softmax(logits, dim=1)
        out = r @ amu_v - xf * (r @ inv_v)
        return out.to(x.dtype).reshape(x.shape)


def check_fast_score(mixture: GaussianMixture, sde) -> float:
    """Largest relative difference to ``GaussianMixture.score`` over t in (eps, 0.1, 0.5, 1)."""
    fast, gen = FastScore(mixture, sde), torch.Generator().manual_seed(0)
    worst = 0.0
    for t in (sde.eps, 0.1, 0.5, 1.0):
        x = mixture.at(t, sde).sample(64, gen, dtype=torch.float64)
        ref = mixture.score(x, torch.tensor(t, dtype=torch.float64), sde)
        got = fast(x, torch.full((64,), t, dtype=torch.float64))
        worst = max(worst, float((got - ref).norm() / ref.norm()))
    return worst


def load_ours(cfg: str):
    """Our config ``cfg``: a conf/solver name, ``+key=value`` overriding one field each."""
    name, *overrides = cfg.split("+")  # e.g. unipc+grid.level_max=20
    conf = OmegaConf.load(CONF / f"{name}.yaml")
    for item in overrides:
        key, value = item.split("=", 1)
        OmegaConf.update(conf, key, yaml.safe_load(value))
    return instantiate(conf)


def tunable(cfg: str) -> bool:
    """Whether ``auto_grid`` can tune ``cfg``'s grid: its main path is a fixed-step ODE solver
    (a stochastic ``Restart`` runs UniPC between its restarts)."""
    main = load_ours(cfg).grid_solver()
    return main.equation == "ode" and not main.stochastic and not main.adaptive


def run_ours(cfg: str, sde, score, x_T, budget: int, seed: int, tune: tuple | None = None):
    """(x, nfe) of our config ``cfg`` at ``budget``; ``tune = (model_key, pilot, max_evals,
    cache_dir)`` first tunes its grid to the score with ``auto_grid`` (cost not in the NFE)."""
    solver = load_ours(cfg)
    steps = steps_for_budget(solver, sde, score, budget, False, event_shape=tuple(x_T.shape[1:]))
    if steps is None:
        return None
    if tune is not None:
        key, pilot, evals, cache = tune
        start = time.perf_counter()
        tuned = auto_grid(sde, score, solver, steps, tuple(x_T.shape[1:]), model_key=key,
                          pilot=pilot, max_evals=evals, cache_dir=cache)  # fmt: skip
        print(f"#   auto_grid {cfg} {pilot}/{evals}: {tuned.nfe} NFE per pilot draw, "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        solver = dataclasses.replace(solver, grid=tuned.grid)
    gen = torch.Generator().manual_seed(seed)
    res = sample(sde, score, solver, x_T.shape, steps=steps, x_init=x_T, generator=gen,
                 dtype=torch.float64)  # fmt: skip
    return res.x, res.nfe


class BrownianPath:
    """A Brownian motion W on the noise-level axis, drawn lazily at the levels asked for.

    ``noise(a, b)`` = (W(b) - W(a)) / sqrt|b - a|, consistent over overlapping calls (new points
    by Brownian bridges between the known ones), the same law as k-diffusion's
    ``BrownianTreeNoiseSampler`` (torchsde's tree) at a fraction of its cost in 3,072 dims.
    """

    def __init__(self, x: torch.Tensor, generator: torch.Generator) -> None:
        self.shape, self.dtype, self.gen = x.shape, x.dtype, generator
        self.points: dict[float, torch.Tensor] = {0.0: torch.zeros_like(x)}

    def _normal(self) -> torch.Tensor:
        return torch.randn(self.shape, generator=self.gen, dtype=self.dtype)

    def at(self, s: float) -> torch.Tensor:
        if s in self.points:
            return self.points[s]
        known = sorted(self.points)
        lo = max((u for u in known if u < s), default=None)
        hi = min((u for u in known if u > s), default=None)
        if hi is None:  # beyond the last point: an independent increment
            w = self.points[lo] + math.sqrt(s - lo) * self._normal()
        elif lo is None:
            w = self.points[hi] - math.sqrt(hi - s) * self._normal()
        else:  # Brownian bridge between lo and hi
            f = (s - lo) / (hi - lo)
            mean = (1 - f) * self.points[lo] + f * self.points[hi]
            w = mean + math.sqrt(f * (hi - s)) * self._normal()
        self.points[s] = w
        return w

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        a, b = float(sigma), float(sigma_next)
        return (self.at(b) - self.at(a)) / math.sqrt(abs(b - a))


def run_kdiffusion(kd, name: str, sde, score, x_T, budget: int, final: str, seed: int):
    """k-diffusion's sample_<name> on its Karras grid at the most steps within the budget."""
    per_step = KD_SAMPLERS[name]
    steps = budget if per_step == 1 else (budget + 1) // 2
    if final == "sigma_min" and per_step == 2:
        steps = budget // 2
    level = sde.noise_level(torch.tensor([sde.T, sde.eps], dtype=torch.float64))
    lo, hi = float(level[1]), float(level[0])
    if final == "zero":
        sigmas = kd.get_sigmas_karras(steps, lo, hi)
    else:
        sigmas = kd.get_sigmas_karras(steps + 1, lo, hi)[:-1]
    times: dict[float, float] = {}
    nfe = 0

    def denoiser(xk: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """D(x_k, sigma) = x_k + sigma^2 alpha score(alpha x_k, t(sigma)), x_k = x / alpha."""
        nonlocal nfe
        nfe += 1
        lv = float(sigma.reshape(-1)[0])
        if lv not in times:
            times[lv] = time_of_level(sde, lv)
        t = torch.full((xk.shape[0],), times[lv], dtype=xk.dtype)
        alpha = float(sde.marginal(t[:1].to(torch.float64))[0])
        return xk + lv**2 * alpha * score(alpha * xk, t)

    def marg(t: float) -> float:
        return float(sde.marginal(torch.tensor([t], dtype=torch.float64))[0])

    torch.manual_seed(seed)  # k-diffusion draws from the global generator
    kwargs = {}
    if name in ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"):  # default: torchsde's slow tree
        kwargs["noise_sampler"] = BrownianPath(x_T, torch.Generator().manual_seed(seed))
    xk = getattr(kd, f"sample_{name}")(
        denoiser, x_T / marg(sde.T), sigmas.to(x_T.dtype), disable=True, **kwargs
    )
    return (xk if final == "zero" else marg(sde.eps) * xk), nfe


def exact(law: GaussianMixture, n: int, gen: torch.Generator):
    """n exact samples of ``law`` (0 NFE)."""
    return law.sample(n, gen, dtype=torch.float64), 0


def record(
    ctx: dict, name: str, family: str, stochastic: bool, budget: int, end: str, fn, *fn_args
):
    """Run fn(*fn_args) -> (x, nfe) or None, judge x against the law at ``end``, print the row."""
    start = time.perf_counter()
    out = fn(*fn_args)
    if out is None:
        return
    x, nfe = out
    m = exact_measures(x, ctx["targets"][end], reference_log_p=ctx["ref_log_p"][end])
    ratios = {k: getattr(m, k) / ctx["floors"][k].mean for k in MEASURES}
    worst = max(ratios.values())
    wall = time.perf_counter() - start
    cells = " | ".join(f"{ratios[k]:.2f}" for k in MEASURES)
    print(f"| {name} | {ctx['preset']} | {ctx['sde']} | {nfe} | {cells} | {worst:.2f} "
          f"| {wall:.1f} |", flush=True)  # fmt: skip
    ctx["rows"].append({"name": name, "family": family, "stochastic": stochastic,
                        "budget": budget, "preset": ctx["preset"], "sde": ctx["sde"],
                        "seed": ctx["seed"],
                        "nfe": nfe, "end": end, "ratios": ratios, "worst": worst,
                        "values": m.values(), "wall_s": wall})  # fmt: skip
    if ctx.get("rows_path"):  # after every row, so that a cut run keeps what it measured
        Path(ctx["rows_path"]).write_text(json.dumps(ctx["rows"], indent=0))


def by_dimension(rows: list[dict]) -> None:
    """Print the worst ratio per sampler and image shape (over iso/aniso and the SDEs)."""
    shapes = list(dict.fromkeys(r["preset"].split()[0] for r in rows))
    print("\n# worst of the four ratios over iso/aniso x VP/sub-VP/VE, per shape (measure)")
    print("| sampler | kind | NFE | " + " | ".join(shapes) + " |")
    print("|---|---|---:|" + "---:|" * len(shapes))
    for name in dict.fromkeys(r["name"] for r in rows):
        rs = [r for r in rows if r["name"] == name]
        cells = []
        for shape in shapes:
            sub = [r for r in rs if r["preset"].startswith(shape + " ")]
            if not sub:
                cells.append("")
                continue
            top = max(sub, key=lambda r: r["worst"])
            measure = max(top["ratios"], key=top["ratios"].get)
            cells.append(f"{top['worst']:.2f} ({SHORT[measure]})")
        kind = "stochastic" if rs[0]["stochastic"] else "deterministic"
        print(f"| {name} | {kind} | {rs[0]['budget'] or '-'} | " + " | ".join(cells) + " |")


def seed_means(rows: list[dict]) -> None:
    """Print each measure's ratio averaged over the draws (rows with several seeds), per
    sampler, preset and SDE, and the worst of those means."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["name"], r["preset"], r["sde"]), []).append(r)
    if max((len(rs) for rs in groups.values()), default=0) < 2:
        return
    print("\n# mean ratio over the draws (seeds) per measure; worst of the means")
    heads = " | ".join(SHORT[m] for m in MEASURES)
    print(f"| sampler | preset | SDE | draws | {heads} | worst mean | worst single |")
    print("|---|---|---|---:|" + "---:|" * (len(MEASURES) + 2))
    for (name, preset, sde), rs in groups.items():
        means = {m: sum(r["ratios"][m] for r in rs) / len(rs) for m in MEASURES}
        cells = " | ".join(f"{means[m]:.2f}" for m in MEASURES)
        single = max(r["worst"] for r in rs)
        print(f"| {name} | {preset} | {sde} | {len(rs)} | {cells} | {max(means.values()):.2f} "
              f"| {single:.2f} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="samples per run")
    ap.add_argument("--shapes", nargs="+", default=["1x8x8", "1x28x28", "3x32x32"])
    ap.add_argument("--kinds", nargs="+", choices=["iso", "aniso"], default=["iso", "aniso"])
    ap.add_argument("--sde", nargs="+", choices=sorted(SDES), default=["vp", "subvp", "ve"])
    ap.add_argument("--det-nfe", type=int, default=10)
    ap.add_argument("--sto-nfe", type=int, default=20)
    ap.add_argument("--ours-det", nargs="*", default=OURS_DET)
    ap.add_argument("--ours-sto", nargs="*", default=OURS_STO)
    ap.add_argument("--kd-det", nargs="*", default=KD_DET)
    ap.add_argument("--kd-sto", nargs="*", default=KD_STO)
    ap.add_argument("--kdiffusion-path", default=None, help="folder holding k_diffusion/")
    ap.add_argument("--kd-final", choices=["zero", "sigma_min"], default="sigma_min")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="prior draws (see top)")
    ap.add_argument(
        "--auto-grid",
        type=int,
        nargs=2,
        action="append",
        default=[],
        metavar=("PILOT", "EVALS"),
        help="also run each deterministic config, and each stochastic one whose main path is "
        "deterministic (restart), on its auto_grid (repeatable)",
    )
    ap.add_argument("--cache-dir", default=None, help="auto_grid's cache (default: a temp dir)")
    ap.add_argument(
        "--tuned-only", action="store_true", help="with --auto-grid: skip ours on their own grids"
    )
    ap.add_argument("--quick", action="store_true", help="1x8x8 iso, VP, n = 1000")
    ap.add_argument("--rows", default=None, help="save every row to this JSON file")
    ap.add_argument("--from-rows", default=None, help="only print the summaries of saved rows")
    args = ap.parse_args()
    if args.from_rows:
        saved = json.loads(Path(args.from_rows).read_text())
        saved = saved["rows"] if isinstance(saved, dict) else saved
        by_dimension(saved)
        seed_means(saved)
        return
    if args.quick:
        args.n, args.shapes, args.kinds, args.sde = 1000, ["1x8x8"], ["iso"], ["vp"]
    torch.set_num_threads(1)
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="auto_grid_"))
    warnings.filterwarnings("ignore", message="Should have t")  # torchsde's float rounding note
    kd = None
    if args.kd_det or args.kd_sto:
        try:
            kd = load_kdiffusion_sampling(args.kdiffusion_path)
        except Exception as err:  # noqa: BLE001 - report and go on without the peer
            print(f"# k-diffusion not loaded ({type(err).__name__}: {err})")
    print(f"# n={args.n}, float64, seeds {args.seeds}, torch {torch.__version__}, "
          f"{platform.machine()}, 1 thread; k-diffusion: {'yes' if kd else 'no'}, final sigma "
          f"{args.kd_final}")  # fmt: skip
    heads = " | ".join(SHORT[m] for m in MEASURES)
    print(f"| sampler | preset | SDE | NFE | {heads} | worst | wall s |")
    print("|---|---|---|---:|" + "---:|" * (len(MEASURES) + 2))
    rows: list[dict] = []
    for shape_name in args.shapes:
        shape = tuple(int(v) for v in shape_name.split("x"))
        assert shape in DIGIT_MIXTURE_SHAPES, shape
        for kind in args.kinds:
            data = digit_mixture(shape, anisotropic=kind == "aniso", dtype=torch.float64)
            floors = exact_floors(data, args.n)  # same for every SDE and end point
            preset = f"{shape_name} {kind}"
            for sde_name in args.sde:
                sde = SDES[sde_name]()
                score = FastScore(data, sde)
                err = check_fast_score(data, sde)
                assert err < 1e-9, f"fast score differs from GaussianMixture.score by {err:.2e}"
                targets = {"eps": data.at(sde.eps, sde), "zero": data}
                for seed in args.seeds:
                    gen = torch.Generator().manual_seed(seed + 7)
                    ref_log_p = {
                        key: posterior_statistics(m.sample(args.n, gen, dtype=torch.float64), m)[1]
                        for key, m in targets.items()
                    }
                    x_T = sde.prior_sample((args.n, *shape), generator=gen, dtype=torch.float64)

                    ctx = {"targets": targets, "ref_log_p": ref_log_p, "floors": floors,
                           "preset": preset, "sde": sde_name, "rows": rows, "seed": seed,
                           "rows_path": args.rows}  # fmt: skip

                    exact_row = ("exact", False, 0, "eps", exact)
                    record(ctx, "exact p_eps", *exact_row, targets["eps"], args.n, gen)
                    record(ctx, "data law vs p_eps", *exact_row, data, args.n, gen)
                    run_args = (sde, score, x_T)
                    own = [] if args.tuned_only and args.auto_grid else args.ours_det
                    for cfg in own:
                        record(ctx, cfg, "ours", False, args.det_nfe, "eps", run_ours, cfg,
                               *run_args, args.det_nfe, seed + 1)  # fmt: skip
                    for pilot, evals in args.auto_grid:
                        tune = (f"{mixture_key(data)}:{sde_name}", pilot, evals, cache)
                        tuned = [(c, False, args.det_nfe) for c in args.ours_det]
                        tuned += [(c, True, args.sto_nfe) for c in args.ours_sto if tunable(c)]
                        for cfg, sto, budget in tuned:
                            record(ctx, f"{cfg} + auto_grid {pilot}/{evals}", "ours", sto,
                                   budget, "eps", run_ours, cfg, *run_args, budget, seed + 1,
                                   tune)  # fmt: skip
                    for cfg in [] if args.tuned_only and args.auto_grid else args.ours_sto:
                        record(ctx, cfg, "ours", True, args.sto_nfe, "eps", run_ours, cfg,
                               *run_args, args.sto_nfe, seed + 1)  # fmt: skip
                    end = "zero" if args.kd_final == "zero" else "eps"
                    for names, budget, sto in ((args.kd_det, args.det_nfe, False),
                                               (args.kd_sto, args.sto_nfe, True)):  # fmt: skip
                        for name in names if kd is not None else []:
                            record(ctx, f"k-diffusion {name}", "k-diffusion", sto, budget, end,
                                   run_kdiffusion, kd, name, sde, score, x_T, budget,
                                   args.kd_final, seed + 1)  # fmt: skip

    print("\n# worst ratio over presets and SDEs (1 = exact sampling; target <= 1.5)")
    print("| sampler | kind | NFE budget | worst | worst measure | median of worst |")
    print("|---|---|---:|---:|---|---:|")
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    for name, rs in by_name.items():
        top = max(rs, key=lambda r: r["worst"])
        measure = max(top["ratios"], key=top["ratios"].get)
        med = sorted(r["worst"] for r in rs)[len(rs) // 2]
        kind = "stochastic" if top["stochastic"] else "deterministic"
        print(f"| {name} | {kind} | {top['budget'] or '-'} | {top['worst']:.2f} "
              f"({top['preset']}, {top['sde']}) | {SHORT[measure]} | {med:.2f} |")  # fmt: skip
    by_dimension(rows)
    seed_means(rows)
    if args.rows:
        Path(args.rows).write_text(json.dumps(rows, indent=0))
    if not all(math.isfinite(r["worst"]) for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
