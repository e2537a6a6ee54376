"""Every sampler on a trained digits U-Net, ours against k-diffusion's, per NFE budget.

    python benchmarks/digits_samplers_benchmark.py --kdiffusion-path /tmp/kdiff   # trains 300 s
    python benchmarks/digits_samplers_benchmark.py --checkpoint PATH --kdiffusion-path SITE \\
        --markdown docs/digits_samplers.md --rows rows.json \\
        --figure docs/digits_samplers_fd_vs_nfe.png
    python benchmarks/digits_samplers_benchmark.py --from-rows rows.json --figure f.png  # redraw

The model: without ``--checkpoint``, the README's digits recipe is trained in-process
(``sde-train train_data=digits model=unet_digits_small train.batch_size=128
train.ema_decay=0.995 train.max_seconds=300``, through :func:`sde_diffusion.apps.train.run`).

Every ``conf/solver`` config (``--ours``; discovered, so a new config joins by itself) samples
it at each NFE budget (``--nfe``) at the most steps whose counted NFE fits the budget
(:func:`peers_benchmark.steps_for_budget`); the adaptive configs (``--adaptive``) run once at
their own tolerance and NFE. k-diffusion's samplers run on the same model through
:class:`peers_benchmark.KDenoiser` (D(x_k, sigma) from the score; see that script's docstring
for the variable change, the Karras grid to sigma = 0 and how k-diffusion is loaded without its
dependencies). Images are flattened to (n, 64) for k-diffusion only; the score still sees
(n, 1, 8, 8). Every run starts from the same prior draw x_T and a fixed seed, in float32 (the
network's dtype) on one thread, and our runs end at the SDE's eps without a Tweedie step (the
apps' default; k-diffusion's grid ends with a denoising step to sigma = 0, within its budget).

Each run is scored by the apps' :meth:`HeldOut.evaluate` (``sde-sample checkpoint=...``'s
metrics): FD, KID, precision/recall in the digits-CNN features against the held-out test split
(359 images), each beside its floor: the same metric for as many training images (n) in place
of the samples. The floor's own spread (FD of ten draws of n training images) is printed too:
at n = 256 it is 0.44 +- 0.17, at n = 1000 0.26 +- 0.03. ``--budget-only B --large-samplers
...`` runs the budgets above B only for the samplers named (the cost is NFE x n).

``docs/digits_samplers.md`` and ``docs/digits_samplers_fd_vs_nfe.png`` came from (about 8
minutes of sampling on 2 loaded cores, after the 300-s training by ``sde-train``):

    python benchmarks/digits_samplers_benchmark.py --checkpoint ckpt_00001796.pt \
        --kdiffusion-path /tmp/kdiff --n 256 --nfe 5 10 20 50 200 --budget-only 50 \
        --large-samplers euler_maruyama unipc dpm_solver_pp_sde "k-diffusion dpmpp_2m" \
        "k-diffusion euler_ancestral" --markdown docs/digits_samplers.md --rows rows.json \
        --figure docs/digits_samplers_fd_vs_nfe.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from itertools import cycle
from pathlib import Path
from types import SimpleNamespace

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_benchmark import (  # noqa: E402
    KD_SAMPLERS,
    KD_STOCHASTIC,
    load_kdiffusion_sampling,
    run_kdiffusion,
    steps_for_budget,
)

from sde_diffusion.apps._reference import checkpoint_data  # noqa: E402
from sde_diffusion.sampling import sample  # noqa: E402
from sde_diffusion.training import load_trained  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "solver"
ALL_CONFIGS = sorted(p.stem for p in CONF.glob("*.yaml"))
RECIPE = [
    "train_data=digits",
    "model=unet_digits_small",
    "train.batch_size=128",
    "train.ema_decay=0.995",
    "progress=false",
    "sample.num_samples=64",
]  # the run's own sample figure: 64 images, as the README's
METRICS = ("fd", "kid", "precision", "recall", "density", "coverage", "class_tv")


def train(seconds: float, out_dir: Path) -> tuple[str, dict]:
    """The README's digits recipe in-process; returns the checkpoint and the train summary."""
    from sde_diffusion.apps.train import run
    from sde_diffusion.config import compose

    cfg = compose("train", [*RECIPE, f"train.max_seconds={seconds}"])
    summary = run(cfg, out_dir)
    return str(summary["checkpoint"]), summary


def floor_spread(data, n: int, repeats: int = 10) -> tuple[float, float, float, float]:
    """FD of ``repeats`` random draws of n training images to the held-out images: the floor's
    mean, standard deviation, min and max (how far apart two samplers must be to differ)."""
    from sde_diffusion.metrics import (
        digits_features,
        extract_features,
        feature_statistics,
        frechet_distance,
    )

    net, digest = digits_features()
    ref = feature_statistics(extract_features(net, data.held_out.float()), digest)
    feats = extract_features(net, data.train.float())
    vals = []
    for seed in range(repeats):
        pick = torch.randperm(len(feats), generator=torch.Generator().manual_seed(seed))[:n]
        vals.append(frechet_distance(feature_statistics(feats[pick], digest), ref))
    v = torch.tensor(vals)
    return float(v.mean()), float(v.std()), float(v.min()), float(v.max())


def _dummy(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -x  # NFE counting only: a fixed-step solver's NFE does not depend on the score


def ours(cfg: str, sde, score, x_T: torch.Tensor, budget: int | None, seed: int):
    """conf/solver/<cfg>.yaml from x_T: at the most steps within ``budget``, or adaptive."""
    solver = instantiate(OmegaConf.load(CONF / f"{cfg}.yaml"))
    steps = None
    if budget is not None:
        steps = steps_for_budget(solver, sde, _dummy, budget, False)
        if steps is None:
            return None
    gen = torch.Generator().manual_seed(seed + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sample(sde, score, solver, x_T.shape, steps=steps, x_init=x_T, generator=gen,
                     dtype=x_T.dtype)  # fmt: skip
    return res.x, res.nfe, steps


def kdiffusion(kd, name: str, sde, score, x_T: torch.Tensor, budget: int, seed: int):
    """k-diffusion's sample_<name> on flattened images (its Karras grid to sigma = 0)."""
    shape = x_T.shape[1:]

    def flat_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return score(x.reshape(-1, *shape), t).reshape(len(x), -1)

    args = SimpleNamespace(kd_final="zero", seed=seed)
    out = run_kdiffusion(kd, name, sde, flat_score, x_T.reshape(len(x_T), -1), budget, args)
    if out is None:
        return None
    x, nfe = out
    per_step = KD_SAMPLERS[name]
    return x.reshape(-1, *shape), nfe, budget if per_step == 1 else (budget + 1) // 2


def markdown(rows: list[dict], header: list[str]) -> str:
    """The full table, then the best deterministic and stochastic sampler per budget."""
    title = "# Samplers on a trained digits U-Net (benchmarks/digits_samplers_benchmark.py)"
    out = [title, "", *(f"- {h.removeprefix('# ')}" for h in header), "",
           "| sampler | kind | budget | steps | NFE | FD | FD floor | FD/floor | KID | KID floor "
           "| precision | recall | wall s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:"
           "|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['name']} | {r['kind']} | {r['budget'] or 'adaptive'} | | | "
                       f"failed: {r['error']} | | | | | | | |")  # fmt: skip
            continue
        out.append(
            f"| {r['name']} | {r['kind']} | {r['budget'] or 'adaptive'} | {r['steps'] or ''} "
            f"| {r['nfe']} | {r['fd']:.2f} | {r['fd_floor']:.2f} | {r['fd'] / r['fd_floor']:.2f} "
            f"| {r['kid']:.4f} | {r['kid_floor']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} "
            f"| {r['wall_time_s']:.1f} |"
        )
    out += ["", "Best FD per budget (ours against k-diffusion):", "",
            "| budget | kind | best of ours (FD) | best of k-diffusion (FD) |",
            "|---:|---|---|---|"]  # fmt: skip
    ok = [r for r in rows if r["status"] == "ok" and r["budget"]]
    for b in sorted({r["budget"] for r in ok}):
        for kind in ("deterministic", "stochastic"):
            cells = []
            for fam in ("ours", "k-diffusion"):
                cand = [
                    r for r in ok if r["budget"] == b and r["kind"] == kind and r["family"] == fam
                ]
                best = min(cand, key=lambda r: r["fd"], default=None)
                cells.append("–" if best is None else f"{best['label']} ({best['fd']:.2f})")
            out.append(f"| {b} | {kind} | {cells[0]} | {cells[1]} |")
    return "\n".join(out) + "\n"


def figure(rows: list[dict], path: str, title: str = "", spread: list | None = None) -> None:
    """FD against NFE, deterministic and stochastic samplers apart, the FD floor marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sde_diffusion.plot import quality_vs_nfe

    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5), sharey=True)
    for ax, kind in zip(axes, ("deterministic", "stochastic"), strict=True):
        pts = [{**r, "sde": r["family"]} for r in rows if r["kind"] == kind]
        quality_vs_nfe(pts, metric="fd", ax=ax, floor_key="fd_floor")
        if spread:
            lo, hi = spread[0] - spread[1], spread[0] + spread[1]
            ax.axhspan(lo, hi, color="0.85", zorder=0, label="floor: mean +- sd of 10 draws")
        mine, peers = cycle(plt.cm.tab20.colors), cycle(plt.cm.Dark2.colors + plt.cm.Set1.colors)
        for line in ax.get_lines():
            if line.get_label().startswith("ours"):
                line.set(lw=2.2, ms=5, color=next(mine))
            elif line.get_label() != "noise floor":
                line.set(ls="--", lw=1, ms=3, alpha=0.85, color=next(peers))
        ax.set(title=f"{kind}: FD against NFE", ylabel="Fréchet distance (digits-CNN features)")
        ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="a digits checkpoint (else: train one)")
    ap.add_argument("--train-seconds", type=float, default=300.0)
    ap.add_argument("--train-dir", default="outputs/digits_samplers_benchmark/train")
    ap.add_argument("--n", type=int, default=256, help="samples per run")
    ap.add_argument("--nfe", type=int, nargs="*", default=[5, 10, 20, 50, 200])
    ap.add_argument("--budget-only", type=int, default=None,
                    help="budgets above this run only --large-samplers")  # fmt: skip
    ap.add_argument("--large-samplers", nargs="*", default=[])
    ap.add_argument("--ours", nargs="*", default=None, help="fixed-step configs (default: all)")
    ap.add_argument("--adaptive", nargs="*", default=None, help="adaptive configs (default: all)")
    ap.add_argument("--peers", nargs="*", default=list(KD_SAMPLERS), choices=list(KD_SAMPLERS))
    ap.add_argument("--kdiffusion-path", default=None, help="folder holding k_diffusion/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", default=None, help="write the Markdown tables here")
    ap.add_argument("--rows", default=None, help="save every row to this JSON file")
    ap.add_argument("--figure", default=None, help="save the FD-against-NFE figure here")
    ap.add_argument(
        "--from-rows", default=None, help="only write --figure/--markdown from saved rows"
    )
    args = ap.parse_args()
    if args.from_rows:
        saved = json.loads(Path(args.from_rows).read_text())
        if args.markdown:
            Path(args.markdown).write_text(markdown(saved["rows"], saved["header"]))
        figure(saved["rows"], args.figure or "fd_vs_nfe.png", saved.get("title", ""),
               saved.get("floor_spread"))  # fmt: skip
        return

    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    header = []
    if args.checkpoint is None:
        start = time.perf_counter()
        args.checkpoint, summ = train(args.train_seconds, Path(args.train_dir))
        header.append(f"# trained in-process: {summ['step']} steps in {summ['seconds']:.0f} s "
                      f"({summ['steps_per_s']:.1f} steps/s), load average {load0:.1f} at the start, "
                      f"{os.getloadavg()[0]:.1f} at the end ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    trained = load_trained(args.checkpoint)
    sde, score = trained.sde, trained.score_fn()
    data = checkpoint_data(trained.config, trained.data_transform)
    kd = None
    if args.peers:
        try:
            kd = load_kdiffusion_sampling(args.kdiffusion_path)
        except Exception as err:  # noqa: BLE001 - report and go on without the peer
            print(f"# k-diffusion not loaded ({type(err).__name__}: {err})")
        if kd is None:
            header.append("# k-diffusion not found: ours only (pass --kdiffusion-path)")
    fixed = args.ours if args.ours is not None else None
    built = {c: instantiate(OmegaConf.load(CONF / f"{c}.yaml")) for c in ALL_CONFIGS}
    if fixed is None:
        fixed = [c for c in ALL_CONFIGS if not built[c].adaptive]
    adaptive = args.adaptive
    if adaptive is None:
        adaptive = [c for c in ALL_CONFIGS if built[c].adaptive]
    header.append(
        f"# checkpoint step {trained.step}, {type(sde).__name__}, eps {sde.eps:g}; n={args.n} per "
        f"run, float32, seed {args.seed}, 1 thread, torch {torch.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} "
        f"at the start of sampling; metrics: HeldOut.evaluate against {data.source} "
        f"({len(data.held_out)} images); floors: {args.n} training images in place of the samples"
    )
    spread = floor_spread(data, min(args.n, len(data.train)))
    mean, sd, lo, hi = spread
    header.append(f"# FD floor over 10 draws of {args.n} training images: {mean:.2f} +- {sd:.2f} "
                  f"({lo:.2f}-{hi:.2f}); the table's floor is the draw of seed {args.seed}")  # fmt: skip
    for line in header:
        print(line, flush=True)
    gen = torch.Generator().manual_seed(args.seed)
    x_T = sde.prior_sample((args.n, *trained.data_shape), generator=gen, dtype=torch.float32)
    rows: list[dict] = []

    def run(name, family, label, kind, budget, fn, *fn_args):
        start = time.perf_counter()
        row = {"name": name, "family": family, "label": label, "kind": kind, "budget": budget}
        try:
            out = fn(*fn_args)
            if out is None:
                return
            x, nfe, steps = out
            wall = time.perf_counter() - start
            scores = data.evaluate(x, args.seed)
            row.update(status="ok", nfe=int(nfe), steps=steps, wall_time_s=wall,
                       **{k: scores[k] for s in ("", "_floor") for k in (m + s for m in METRICS)})  # fmt: skip
            print(f"| {name} | {kind} | {budget or 'adaptive'} | {steps or ''} | {nfe} | "
                  f"{row['fd']:.2f} | {row['fd_floor']:.2f} | {row['kid']:.4f} | "
                  f"{row['precision']:.3f} | {row['recall']:.3f} | {wall:.1f} |", flush=True)  # fmt: skip
        except Exception as err:  # noqa: BLE001 - a failed run is a row; the sweep goes on
            row.update(status="failed", error=f"{type(err).__name__}: {str(err)[:80]}")
            print(f"| {name} | {kind} | {budget} | failed: {row['error']} |", flush=True)
        rows.append(row)

    print("| sampler | kind | budget | steps | NFE | FD | FD floor | KID | precision | recall "
          "| wall s |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for b in args.nfe:
        large = args.budget_only is not None and b > args.budget_only
        for cfg in fixed:
            if not large or cfg in args.large_samplers:
                kind = "stochastic" if built[cfg].stochastic else "deterministic"
                run(cfg, "ours", cfg, kind, b, ours, cfg, sde, score, x_T, b, args.seed)
        for name in args.peers if kd is not None else []:
            if not large or f"k-diffusion {name}" in args.large_samplers:
                kind = "stochastic" if name in KD_STOCHASTIC else "deterministic"
                run(f"k-diffusion {name}", "k-diffusion", name, kind, b, kdiffusion, kd, name,
                    sde, score, x_T, b, args.seed)  # fmt: skip
    for cfg in adaptive:
        kind = "stochastic" if built[cfg].stochastic else "deterministic"
        run(cfg, "ours", cfg, kind, 0, ours, cfg, sde, score, x_T, None, args.seed)
    header.append(f"# load average {os.getloadavg()[0]:.1f} at the end")
    print(header[-1])
    title = (f"Digits U-Net (step {trained.step}), n = {args.n} per run, FD in digits-CNN "
             f"features against the test split; floor: {args.n} training images")  # fmt: skip
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows, header))
    if args.rows:
        saved = {"title": title, "header": header, "rows": rows, "floor_spread": spread}
        Path(args.rows).write_text(json.dumps(saved))
    if args.figure:
        figure(rows, args.figure, title, spread)


if __name__ == "__main__":
    main()
