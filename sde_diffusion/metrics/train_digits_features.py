"""Train the digits feature network and write ``digits_features.pt`` (fixed seed, CPU, ~1 min).

    python -m sde_diffusion.metrics.train_digits_features [--out PATH] [--seed 0]

Adam on ``DigitsDataset(split="train")`` (1438 images) with random one-pixel shifts, a fixed
number of epochs (no model selection on the test split), then the accuracy on
``DigitsDataset(split="test")`` (359 images) is measured once and recorded in the file with the
weights' sha256 digest. The feature scale is fixed last: mean |f|^2 / 64 = 1 on the train split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import DigitsDataset
from ..training.checkpoint import save_checkpoint
from .digits_features import DigitsCNN, _default_path
from .features import weights_digest

EPOCHS = 60
BATCH = 64
LR = 2e-3
WEIGHT_DECAY = 1e-4


def _shift(x: Tensor, g: torch.Generator) -> Tensor:
    """Each image moved by (dy, dx) in {-1, 0, 1}^2, the background (-1) filling in."""
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    d = torch.randint(0, 3, (x.shape[0], 2), generator=g)
    return torch.stack(
        [
            p[:, int(a) : int(a) + 8, int(b) : int(b) + 8]
            for p, (a, b) in zip(padded, d, strict=True)
        ]
    )


def accuracy(net: DigitsCNN, split: str = "test") -> tuple[float, int]:
    """Fraction of ``DigitsDataset(split)`` classified correctly, and the number of images."""
    ds = DigitsDataset(split=split)
    with torch.no_grad():
        pred = net.logits(ds.data).argmax(1)
    return float((pred == ds.labels).double().mean()), len(ds)


def train(seed: int = 0) -> tuple[DigitsCNN, dict]:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    ds = DigitsDataset(split="train")
    x, y = ds.data, ds.labels
    net = DigitsCNN()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    for _ in range(EPOCHS):
        net.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), BATCH):
            idx = perm[i : i + BATCH]
            loss = F.cross_entropy(net.logits(_shift(x[idx], g)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval().requires_grad_(False)
    with torch.no_grad():
        net.feature_scale.fill_(float(net(x).square().mean().rsqrt()))
    acc, n_test = accuracy(net, "test")
    train_acc, _ = accuracy(net, "train")
    meta = {
        "digest": weights_digest(net),
        "test_accuracy": acc,
        "n_test": n_test,
        "train_accuracy": train_acc,
        "seed": seed,
        "epochs": EPOCHS,
        "torch": str(torch.__version__),
    }
    return net, meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=_default_path())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # deterministic reductions
    net, meta = train(args.seed)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    save_checkpoint(args.out, {"state_dict": state, "meta": meta})
    print(
        f"{args.out}: test accuracy {meta['test_accuracy']:.4f} on {meta['n_test']} images, "
        f"train {meta['train_accuracy']:.4f}, sha256 {meta['digest']}"
    )


if __name__ == "__main__":
    main()
