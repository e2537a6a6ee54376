"""Floors of the image metrics on the bundled digits, with the shipped digits extractor.

Each floor is the metric between two disjoint random draws of n real images (from both splits,
1797 images), over 10 draws (seed 0): mean +- std. Also: the extractor's recomputed test
accuracy and the metrics between the test split and a train draw of the same size (held-out
data), and against the test images moved one pixel right.

    python benchmarks/image_metric_floors.py [--n 359 898]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sde_diffusion.data import DigitsDataset
from sde_diffusion.metrics import (
    classifier_score,
    density_coverage,
    digits_features,
    extract_features,
    feature_floor,
    feature_statistics,
    frechet_distance,
    kid,
    precision_recall,
)


def metrics(digest: str) -> dict:
    def fd(a, b):
        return frechet_distance(feature_statistics(a, digest), feature_statistics(b, digest))

    return {
        "FD": fd,
        "KID": lambda a, b: kid(a, b).mean,
        "precision": lambda a, b: precision_recall(a, b).precision,
        "recall": lambda a, b: precision_recall(a, b).recall,
        "density": lambda a, b: density_coverage(a, b).density,
        "coverage": lambda a, b: density_coverage(a, b).coverage,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[359, 898])
    args = parser.parse_args()
    torch.set_num_threads(1)
    net, digest = digits_features()
    train, test = DigitsDataset("train"), DigitsDataset("test")
    with torch.no_grad():
        acc = float((net.logits(test.data).argmax(1) == test.labels).double().mean())
    print(f"extractor {digest[:16]}: test accuracy {100 * acc:.2f} % on {len(test)} images")
    images = torch.cat([train.data, test.data])
    feats = extract_features(net, images).numpy()
    with torch.no_grad():
        logits = net.logits(images).numpy()
    ftr, fte = feats[: len(train)], feats[len(train) :]
    moved = torch.roll(test.data, 1, dims=3)
    moved[..., 0] = -1.0
    fmoved = extract_features(net, moved).numpy()
    sub = ftr[np.random.default_rng(6).permutation(len(ftr))[: len(test)]]
    print(
        "| metric | " + " | ".join(f"floor, n = {n}" for n in args.n) + " | held out | moved 1 px |"
    )
    print("|---|" + "---|" * (len(args.n) + 2))
    for name, metric in metrics(digest).items():
        t = time.perf_counter()
        cells = []
        for n in args.n:
            f = feature_floor(metric, feats, n)
            cells.append(f"{f.mean:.4g} ± {f.std:.2g}")
        cells += [f"{metric(sub, fte):.4g}", f"{metric(sub, fmoved):.4g}"]
        print(f"| {name} | " + " | ".join(cells) + f" | ({time.perf_counter() - t:.1f} s)")
    cells = []
    for n in args.n:
        f = feature_floor(lambda a, b: classifier_score(a, b).tv, logits, n)
        cells.append(f"{f.mean:.4g} ± {f.std:.2g}")
    with torch.no_grad():
        held = classifier_score(net.logits(test.data), train.labels)
        mv = classifier_score(net.logits(moved), train.labels)
    print("| class TV | " + " | ".join(cells) + f" | {held.tv:.4g} | {mv.tv:.4g} |")
    print(
        f"| confidence | (data: {classifier_score(logits, logits).confidence:.4g}) | | "
        f"{held.confidence:.4g} | {mv.confidence:.4g} |"
    )


if __name__ == "__main__":
    main()
