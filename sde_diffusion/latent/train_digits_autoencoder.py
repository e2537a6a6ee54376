"""Train the shipped digits autoencoder (``digits_autoencoder.pt``) with a fixed seed.

    python -m sde_diffusion.latent.train_digits_autoencoder [--steps 3000] [--out PATH]

Runs ``sde-train task=autoencoder train_data=digits autoencoder=kl_f2`` (one thread) in a
temporary run directory, then writes a slim copy of its final checkpoint: the EMA weights, the
config node of the network, the measured latent scale and the image shape (about 240 KB;
:func:`sde_diffusion.latent.save_autoencoder`). About 2 minutes on one idle CPU core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from ..data.images import DigitsDataset
from .file import default_autoencoder_path, load_autoencoder, save_autoencoder

#: the recipe of the shipped file (sde-train overrides)
RECIPE = (
    "task=autoencoder", "train_data=digits", "autoencoder=kl_f2", "train.batch_size=128",
    "train.lr=2e-3", "train.warmup=100", "train.ema_decay=0.995", "train.seed=0",
    "train.max_seconds=null", "threads=1", "progress=false",
)  # fmt: skip


def main(argv: list[str] | None = None) -> Path:
    """Train, slim and write the file; print its held-out reconstruction error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=default_autoencoder_path())
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "sde_diffusion.apps.train", *RECIPE,
               f"train.steps={args.steps}", f"hydra.run.dir={tmp}"]  # fmt: skip
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        ckpt = sorted(Path(tmp, "checkpoints").glob("ckpt_*.pt"))[-1]
        codec = load_autoencoder(ckpt)
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        node = yaml.safe_load(state["config"])["autoencoder"]["model"]
        save_autoencoder(args.out, codec.autoencoder, node, codec.scale, codec.data_shape,
                         int(state["step"]))  # fmt: skip
    shipped = load_autoencoder(args.out)
    test = DigitsDataset(split="test").data
    err = (shipped.decode(shipped.encode(test)) - test).abs().mean()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB); held-out mean |x - D(E(x))| "
          f"= {float(err):.4f} on the [-1, 1] pixel scale")  # fmt: skip
    return args.out


if __name__ == "__main__":
    main()
