"""Training throughput of the 32x32 U-Net (conf/model/unet.yaml), with and without AMP.

    python benchmarks/gpu_throughput.py                       # CUDA if present, else CPU
    python benchmarks/gpu_throughput.py --steps 5 --batch 8   # a quick check on a CPU

On a CPU the defaults shrink to ``--batch 8 --steps 5 --repeats 2 --warmup 1`` unless given
(the GPU defaults took minutes on 2 cores with nothing printed); every block prints a line.

Times full optimiser steps of the Trainer (DSM loss, AdamW, clipping, EMA) on random
3x32x32 data (throughput does not depend on the pixels): median steps/s over repeats, after
warm-up, with the device synchronised around each timed block. AMP (float16 autocast + a
gradient scaler) exists on CUDA only; on a CPU only float32 is measured.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sde_diffusion import VPSDE
from sde_diffusion.losses import DSMLoss
from sde_diffusion.parametrisation import ScoreModel
from sde_diffusion.training import Trainer

CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "unet.yaml"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_second(
    device: torch.device, amp: bool, batch: int, steps: int, repeats: int, warmup: int
) -> list[float]:
    """Median-ready list of steps/s, one per repeat of ``steps`` timed optimiser steps."""
    torch.manual_seed(0)
    sde = VPSDE()
    net = instantiate(OmegaConf.load(CONF))
    model = ScoreModel(net, sde, "edm")
    data = torch.randn(max(4 * batch, 256), 3, 32, 32, device=device)
    trainer = Trainer(
        model, DSMLoss(sde), data, batch_size=batch, lr=2e-4, amp=amp, device=device, warmup=0
    )
    for _ in range(warmup):
        trainer.train_step()
    rates = []
    for i in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        _sync(device)
        rates.append(steps / (time.perf_counter() - start))
        print(f"  amp={amp} repeat {i + 1}/{repeats}: {rates[-1]:.2f} steps/s", flush=True)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=None, help="default 128 (8 on a CPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per repeat: 50 (5)")
    ap.add_argument("--repeats", type=int, default=None, help="default 3 (2 on a CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="default 10 (1 on a CPU)")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    device = torch.device(args.device)
    small = device.type != "cuda"
    for key, gpu, cpu in (
        ("batch", 128, 8),
        ("steps", 50, 5),
        ("repeats", 3, 2),
        ("warmup", 10, 1),
    ):
        if getattr(args, key) is None:
            setattr(args, key, cpu if small else gpu)
    if small:
        print("no CUDA device: a small CPU run (see --help for the sizes)", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    head = (
        f"# U-Net 32x32 ({CONF.name}), batch {args.batch}, {args.steps} steps x "
        f"{args.repeats} repeats after {args.warmup} warm-up; {device} ({name or platform.machine()}), "
        f"torch {torch.__version__}"
    )
    lines = [
        head,
        "| precision | steps/s (median) | images/s | all repeats |",
        "|---|---:|---:|---|",
    ]
    modes = [False, True] if device.type == "cuda" else [False]
    base = None
    for amp in modes:
        rates = steps_per_second(device, amp, args.batch, args.steps, args.repeats, args.warmup)
        med = statistics.median(rates)
        base = base or med
        label = "AMP float16" if amp else "float32"
        ratio = f" ({med / base:.2f}x float32)" if amp else ""
        lines.append(
            f"| {label} | {med:.2f}{ratio} | {med * args.batch:.1f} | "
            + ", ".join(f"{r:.2f}" for r in rates)
            + " |"
        )
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
