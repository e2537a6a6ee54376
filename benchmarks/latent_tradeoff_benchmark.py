"""Pixel-space against latent-space score models on the 8x8 digits, at equal training wall time.

    python benchmarks/latent_tradeoff_benchmark.py                      # ~12 min on 2 cores
    python benchmarks/latent_tradeoff_benchmark.py --seconds 60 --n 500  # a quick look

Both models follow the README's digits recipe (``sde-train train_data=digits
train.batch_size=128 train.ema_decay=0.995``, VP SDE, EDM parametrisation, one thread), trained
for the same ``--seconds`` of wall time by :func:`sde_diffusion.apps.train.run`:

- pixel: ``model=unet_digits_small`` on the 1x8x8 images;
- latent: ``model=unet_latent`` (the same U-Net widths) on the 2x4x4 latents of the shipped
  KL-f2 autoencoder (``sde_diffusion/latent/digits_autoencoder.pt``, whose own training, 3000
  steps in about 2 minutes, is a one-off cost not counted in the budget).

Each is sampled by ``sde-sample checkpoint=...`` (:func:`sde_diffusion.apps.sample.run`) at
equal NFE (DPM-Solver++(2M) at 20 steps, Euler-Maruyama at 100) and scored on decoded images
by the apps' held-out metrics: FD, precision and recall in the digits-CNN features against the
test split, beside their floor (as many training images in place of the samples). The
autoencoder's reconstruction floor is the FD of D(E(x)) of those training images. Last, the
cost of one forward+backward pass of both networks (and one decode) is timed at 32x32 and
64x64 inputs (the latent at 16x16 and 32x32, f = 2), from which the projected training
steps/s and sampling time per image at those sizes follow.

Rows go to ``docs/latent_tradeoff_rows.json``. The machine is a 2-core VM shared with other
jobs: rates are noisy (the 1-minute load average is recorded at start and end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from sde_diffusion.apps import sample as sample_app
from sde_diffusion.apps._reference import digits_scores
from sde_diffusion.apps.train import run as train_run
from sde_diffusion.config import compose
from sde_diffusion.data.images import DigitsDataset
from sde_diffusion.latent import default_autoencoder_path, load_autoencoder
from sde_diffusion.models import UNet
from sde_diffusion.models.autoencoder import Autoencoder

RECIPE = ["train_data=digits", "train.batch_size=128", "train.ema_decay=0.995", "threads=1",
          "progress=false", "sample.num_samples=64", "sample.steps=20"]  # fmt: skip
SAMPLERS = [("dpm_solver_pp_2m", 20), ("euler_maruyama", 100)]
ROOT = Path(__file__).resolve().parents[1]


def _load() -> float:
    return os.getloadavg()[0]


def train_both(seconds: float, out: Path, ae_path: Path) -> dict[str, dict]:
    """Train the pixel and the latent model for ``seconds`` each; return their summaries."""
    runs = {
        "pixel": ["model=unet_digits_small"],
        "latent": ["model=unet_latent", f"latent={ae_path}"],
    }
    out_rows = {}
    for name, extra in runs.items():
        overrides = [*RECIPE, *extra, f"train.max_seconds={seconds}"]
        print(f"training {name} for {seconds:.0f} s ...", flush=True)
        summary = train_run(compose("train", overrides), out / name)
        ckpt = Path(summary["checkpoint"])
        out_rows[name] = {**summary, "checkpoint": str(ckpt)}
        print(f"  {summary['step']} steps, {summary['steps_per_s']:.2f} steps/s", flush=True)
    return out_rows


def sample_rows(trained: dict[str, dict], n: int, out: Path) -> list[dict]:
    rows = []
    for name, summary in trained.items():
        for solver, steps in SAMPLERS:
            cfg = compose("sample", [f"checkpoint={summary['checkpoint']}", f"solver={solver}",
                                     f"steps={steps}", f"num_samples={n}", "progress=false",
                                     "figure=false"])  # fmt: skip
            (out / f"{name}_{solver}").mkdir()
            m = sample_app.run(cfg, out / f"{name}_{solver}")
            row = {
                "kind": "model", "space": name, "solver": solver, "nfe": m["nfe"],
                "train_seconds": summary["seconds"], "train_steps": summary["step"],
                "train_steps_per_s": summary["steps_per_s"],
                "sample_s_per_image": m["wall_time_s"] / n,  # latent: decoding included
                **{k: m[k] for k in ("fd", "fd_floor", "precision", "recall", "kid",
                                     "precision_floor", "recall_floor")},
            }  # fmt: skip
            rows.append(row)
            print(f"  {name:6s} {solver:16s} NFE {m['nfe']:3d}: FD {m['fd']:.2f} (floor "
                  f"{m['fd_floor']:.2f}), P {m['precision']:.3f}, R {m['recall']:.3f}, "
                  f"{1e3 * row['sample_s_per_image']:.2f} ms/image", flush=True)  # fmt: skip
    return rows


def reconstruction_floor(n: int, ae_path: Path) -> dict:
    """FD (precision, recall) of D(E(x)) for n training digits against the test split."""
    codec = load_autoencoder(ae_path)
    train, test = DigitsDataset(split="train").data, DigitsDataset(split="test").data
    real = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n]]
    recon = codec.decode(codec.encode(real))
    s = digits_scores(recon, real, test)
    l1 = float((codec.decode(codec.encode(test)) - test).abs().mean())
    return {"kind": "reconstruction_floor", "fd": s["fd"], "fd_floor": s["fd_floor"],
            "precision": s["precision"], "recall": s["recall"], "held_out_l1": l1,
            "autoencoder": str(ae_path), "autoencoder_sha256": codec.sha256}  # fmt: skip


def _time(fn, reps: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def scaling_rows(batch: int, reps: int) -> list[dict]:
    """Seconds per forward+backward of a batch, per image, for both networks at 8, 32, 64."""
    rows = []
    torch.manual_seed(0)
    for res in (8, 32, 64):
        pixel = UNet(1, res, ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(res // 2,),
                     dropout=0.0)  # fmt: skip
        latent = UNet(2, res // 2, ch=16, ch_mult=(1, 2), num_res_blocks=1,
                      attn_resolutions=(res // 4,), dropout=0.0)  # fmt: skip
        ae = Autoencoder(1, res, ch=16, ch_mult=(1, 2), latent_channels=2).eval()
        row = {"kind": "scaling", "resolution": res, "batch": batch}
        for name, net, shape in (("pixel", pixel, (1, res, res)),
                                 ("latent", latent, (2, res // 2, res // 2))):  # fmt: skip
            x, c = torch.randn(batch, *shape), torch.rand(batch)

            def step(net=net, x=x, c=c) -> None:
                net.zero_grad(set_to_none=True)
                net(x, c).square().mean().backward()

            def forward(net=net, x=x, c=c) -> None:
                with torch.no_grad():
                    net(x, c)

            row[f"{name}_train_s_per_image"] = _time(step, reps) / batch
            row[f"{name}_forward_s_per_image"] = _time(forward, reps) / batch
        z = torch.randn(batch, 2, res // 2, res // 2)
        with torch.no_grad():
            row["decode_s_per_image"] = _time(lambda z=z, ae=ae: ae.decode(z), reps) / batch
        row["train_speedup"] = row["pixel_train_s_per_image"] / row["latent_train_s_per_image"]
        for nfe in (20, 100):
            p = nfe * row["pixel_forward_s_per_image"]
            q = nfe * row["latent_forward_s_per_image"] + row["decode_s_per_image"]
            row[f"sample_speedup_nfe{nfe}"] = p / q
        rows.append(row)
        print(f"  {res}x{res}: fwd+bwd per image pixel {1e3 * row['pixel_train_s_per_image']:.3f} ms, "
              f"latent {1e3 * row['latent_train_s_per_image']:.3f} ms (x{row['train_speedup']:.2f}); "
              f"sampling x{row['sample_speedup_nfe20']:.2f} at 20 NFE", flush=True)  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=240.0, help="training wall time each")
    parser.add_argument("--n", type=int, default=1000, help="samples per sampler")
    parser.add_argument("--batch", type=int, default=32, help="batch of the scaling timings")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--autoencoder", type=Path, default=default_autoencoder_path())
    parser.add_argument("--rows", type=Path, default=ROOT / "docs" / "latent_tradeoff_rows.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start, load0 = time.perf_counter(), _load()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared "
          f"with other jobs (1-min load {load0:.2f}); one torch thread", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("SDE_DIFFUSION_CACHE", str(Path(tmp) / "cache"))
        trained = train_both(args.seconds, Path(tmp), args.autoencoder)
        print("sampling ...", flush=True)
        rows = sample_rows(trained, args.n, Path(tmp))
    rows.append(reconstruction_floor(args.n, args.autoencoder))
    print(f"reconstruction floor: FD {rows[-1]['fd']:.3f} (data floor {rows[-1]['fd_floor']:.3f}), "
          f"held-out L1 {rows[-1]['held_out_l1']:.4f}", flush=True)  # fmt: skip
    print("scaling (one forward+backward, batch of", args.batch, ") ...", flush=True)
    rows += scaling_rows(args.batch, args.reps)
    meta = {
        "kind": "meta", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()}-core VM shared with other jobs, one torch thread",
        "load_start": load0, "load_end": _load(), "torch": torch.__version__,
        "python": sys.version.split()[0], "seconds_each": args.seconds, "n": args.n,
        "total_s": time.perf_counter() - start,
        "command": "python benchmarks/latent_tradeoff_benchmark.py " + " ".join(argv or sys.argv[1:]),
    }  # fmt: skip
    args.rows.parent.mkdir(parents=True, exist_ok=True)
    tmp_rows = args.rows.with_suffix(".tmp")
    tmp_rows.write_text(json.dumps([meta, *rows], indent=1) + "\n")
    tmp_rows.replace(args.rows)
    print(
        f"wrote {args.rows} in {meta['total_s']:.0f} s (load {load0:.2f} -> {meta['load_end']:.2f})"
    )


if __name__ == "__main__":
    main()
