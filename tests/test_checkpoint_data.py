"""A checkpoint is scored against the data it was trained on (issue 19): its exact law when
that is a mixture, otherwise held-out data (sliced W2 and MMD with their floors); an image
checkpoint samples from the command line with ``checkpoint=`` alone and writes image grids."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sde_diffusion.apps._job import evaluate
from sde_diffusion.apps.sample import run as sample_run
from sde_diffusion.apps.train import run as train_run
from sde_diffusion.config import compose
from sde_diffusion.datasets import eight_gaussians, unequal_mixture
from sde_diffusion.metrics.sliced_wasserstein import sliced_wasserstein
from sde_diffusion.sde import VPSDE

TRAIN = ["train.batch_size=128", "train.checkpoint_every=1000", "threads=1", "progress=false",
         "sample.steps=5", "sample.num_samples=16", "train.warmup=20"]  # fmt: skip
SAMPLE = ["steps=50", "num_samples=1000", "progress=false", "threads=1"]


def _train(root, name, *extra):
    out = root / name
    train_run(compose("train", [*TRAIN, *extra]), out)
    return next((out / "checkpoints").glob("ckpt_*.pt"))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    tiny = ["model.hidden=64", "model.embed_dim=32", "train.steps=400"]
    return {
        "moons": _train(root, "moons", "train_data=moons", "train_data.n=4000", *tiny),
        "unequal": _train(
            root,
            "unequal",
            "train_data=eight_gaussians",
            "train_data.name=unequal_mixture",
            "train_data.n=4000",
            *tiny,
        ),  # fmt: skip
        "digits": _train(
            root,
            "digits",
            "train_data=digits",
            "model=unet_digits_small",
            "train.steps=5",
            "train.batch_size=32",
        ),  # fmt: skip
    }


def test_moons_checkpoint_is_scored_against_held_out_moons(ckpts, tmp_path):
    metrics = sample_run(compose("sample", [*SAMPLE, f"checkpoint={ckpts['moons']}"]), tmp_path)
    assert metrics["reference"].startswith("a fresh draw") and "tv" not in metrics
    assert {"sliced_wasserstein_floor", "mmd", "mmd_floor"} <= set(metrics)
    # It once was scored against the default eight Gaussians, with their contours drawn:
    x = torch.from_numpy(np.load(tmp_path / "samples.npz")["x"]).double()
    wrong = sliced_wasserstein(x, eight_gaussians().sample(len(x)).double())
    assert metrics["sliced_wasserstein"] < 0.5 * wrong
    assert (tmp_path / "samples.png").stat().st_size > 10_000


def test_mixture_checkpoint_is_scored_against_its_exact_law(ckpts, tmp_path):
    metrics = sample_run(compose("sample", [*SAMPLE, f"checkpoint={ckpts['unequal']}"]), tmp_path)
    x = torch.from_numpy(np.load(tmp_path / "samples.npz")["x"])
    sde = VPSDE()
    want = evaluate(x, unequal_mixture(), sde, metrics["eps"], metrics["seed"])
    assert metrics["tv"] == pytest.approx(want["tv"], rel=1e-12)  # the unequal mixture's law
    assert metrics["tv_floor"] == pytest.approx(want["tv_floor"], rel=1e-12)


def test_data_on_the_command_line_still_wins(ckpts, tmp_path):
    cfg = compose("sample", [*SAMPLE, f"checkpoint={ckpts['moons']}", "data=eight_gaussians"])
    metrics = sample_run(cfg, tmp_path, explicit=True)
    assert "tv" in metrics and "reference" not in metrics


def test_digits_checkpoint_samples_from_the_command_line(ckpts, tmp_path):
    cmd = [sys.executable, "-m", "sde_diffusion.apps.sample", f"checkpoint={ckpts['digits']}",
           "steps=10", "num_samples=256", "progress=false", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["reference"] == "the data set's test split" and metrics["reference_n"] > 300
    assert np.load(tmp_path / "samples.npz")["x"].shape == (256, 1, 8, 8)
    # image metrics in the digits features, beside their floors: a 5-step model is far off
    assert metrics["fd"] > 5 * metrics["fd_floor"] and metrics["fd_floor"] < 1.0
    assert metrics["precision_floor"] > 0.9 and metrics["coverage"] < metrics["coverage_floor"]
    assert (tmp_path / "samples.png").stat().st_size > 10_000
    assert "data" not in metrics  # not the default data= name: the checkpoint's own data
