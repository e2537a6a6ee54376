"""Train the default 2-D toy for a wall-clock budget, then measure its samples against the truth.

    python benchmarks/train_toy_benchmark.py                       # sde-train defaults, 60 s
    python benchmarks/train_toy_benchmark.py --steps 4000 --seconds 0 -o train.lr=3e-3
    python benchmarks/train_toy_benchmark.py --eval ode_rk4:25 euler_maruyama:200 --exact

Training is ``sde-train`` itself (``sde_diffusion.apps.train.run`` with the composed
``conf/train.yaml`` and any ``-o`` overrides) in a temporary run directory. The EMA weights of
its last checkpoint are then loaded as ``sde-sample checkpoint=...`` would
(``load_trained``) and sampled with each ``--eval SOLVER:STEPS`` (``conf/solver`` names) at
``--n`` points. Each Markdown row gives the total variation of the samples' 2-D histogram
(``--bins`` per axis over the default range, mu +- 4 std of the modes) to the exact law of
x at the SDE's eps, the metric's exact floor for exact samples at this n and bins, and their
ratio. ``--exact`` also samples the mixture's exact score with the same solver and NFE, so a
ratio near 1 there shows the solver is not what the trained model's ratio measures.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import sde_diffusion.apps.train as train_app
from sde_diffusion.apps._model import load_trained
from sde_diffusion.config import compose
from sde_diffusion.metrics.total_variation import tv_to_mixture
from sde_diffusion.sampling import sample
from sde_diffusion.training.rebuild import rebuild

CONF = Path(__file__).resolve().parents[1] / "conf" / "solver"


def train(overrides: list[str], steps: int | None, seconds: float | None, out: Path) -> dict:
    """Run ``sde-train`` with the overrides and the step / time budget; return its summary."""
    extra = ["progress=false", "sample.num_samples=200", "sample.steps=20"]
    if steps is not None:
        extra.append(f"train.steps={steps}")
    extra.append(f"train.max_seconds={seconds if seconds else 'null'}")
    cfg = compose("train", [*extra, *overrides])
    tc = cfg.train
    # The learning-rate decay and EMA warm-up of conf/train: handed to the Trainer here as well, in case the
    # app does not pass it yet (keywords the app passes itself take precedence).
    trainer_cls = train_app.Trainer
    train_app.Trainer = functools.partial(
        trainer_cls,
        lr_decay=str(tc.get("lr_decay", "none")),
        decay_steps=int(tc.steps),
        lr_final=float(tc.get("lr_final", 0.0)),
        ema_warmup=bool(tc.get("ema_warmup", False)),
    )
    try:
        summary = train_app.run(cfg, out)
    finally:
        train_app.Trainer = trainer_cls
    summary["config"] = OmegaConf.to_container(cfg, resolve=True)
    return summary


def evaluate(ckpt: Path, mixture, spec: str, n: int, bins: int, seed: int, exact: bool) -> list:
    """Rows (kind, solver, steps, nfe, TV result, wall s) for the EMA model (and exact score)."""
    name, steps = spec.split(":")
    solver = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    trained = load_trained(ckpt)
    sde = trained.sde
    target = mixture.at(sde.eps, sde)
    scores = [("trained EMA", trained.score_fn())]
    if exact:
        scores.append(("exact score", mixture.score_fn(sde)))
    rows = []
    for kind, score in scores:
        gen = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        res = sample(sde, score, solver, (n, 2), steps=int(steps), generator=gen)
        wall = time.perf_counter() - t0
        rows.append(
            (kind, name, int(steps), res.nfe, tv_to_mixture(res.x, target, bins=bins), wall)
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--override", nargs="*", default=[], help="sde-train overrides")
    ap.add_argument("--seconds", type=float, default=60.0, help="wall budget; 0 = none")
    ap.add_argument("--steps", type=int, default=None, help="step budget (default: config's)")
    ap.add_argument(
        "--eval",
        nargs="+",
        default=["dpm_solver_pp_sde:50", "euler_maruyama:200", "ode_rk4:25"],
        help="SOLVER:STEPS ...",
    )
    ap.add_argument("--n", type=int, default=20_000, help="samples per evaluation")
    ap.add_argument("--bins", type=int, default=64, help="histogram bins per axis")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exact", action="store_true", help="also sample the exact score")
    ap.add_argument("--threads", type=int, default=None, help="sampling threads (default: 1)")
    ap.add_argument("--markdown", type=Path, default=None, help="append the rows to this file")
    ap.add_argument("--keep", type=Path, default=None, help="run directory to keep")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "run"
        summary = train(args.override, args.steps, args.seconds, out)
        torch.set_num_threads(args.threads or 1)
        cfg = summary["config"]
        dataset = rebuild(cfg["train_data"], "train_data")  # a stored config: allow-list only
        if getattr(dataset, "mixture", None) is None:
            raise SystemExit("train_data must be a Gaussian-mixture preset (exact law needed)")
        rows = []
        for spec in args.eval:
            rows += evaluate(
                Path(summary["checkpoint"]), dataset.mixture, spec, args.n, args.bins,
                args.seed, args.exact,
            )  # fmt: skip
    tc = cfg["train"]
    head = (
        f"train: {' '.join(args.override) or 'defaults'}; steps {summary['steps_run']} in "
        f"{summary['seconds']:.1f} s ({summary['steps_per_s']:.1f} steps/s), batch "
        f"{tc['batch_size']}, lr {tc['lr']} ({tc.get('lr_decay', 'none')} decay), ema "
        f"{tc['ema_decay']}, {cfg['parametrisation']}, MLP {cfg['model'].get('hidden')}x"
        f"{cfg['model'].get('depth')}, threads {cfg['threads']}, "
        f"final loss {summary['final_loss']:.4f}"
    )
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}, torch {torch.__version__}"
    )
    lines = [f"<!-- {machine} -->", f"**{head}** (n = {args.n}, {args.bins}x{args.bins} bins)", ""]
    lines += ["| model | solver | steps | NFE | TV | floor | ratio | sample s |", "|---" * 8 + "|"]
    for kind, name, steps, nfe, tv, wall in rows:
        lines.append(
            f"| {kind} | {name} | {steps} | {nfe} | {tv.tv:.4f} | {tv.floor:.4f} "
            f"| {tv.ratio:.2f} | {wall:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}))
    if args.markdown is not None:
        with args.markdown.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
