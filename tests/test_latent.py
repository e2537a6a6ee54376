"""Latent diffusion (issue 16): the autoencoders, the latent scale, ``sde-train task=autoencoder``
with resume, ``sde-train latent=PATH``, decoded sampling, the diffusers adapter and bad input.

The shipped digits autoencoder (``sde_diffusion/latent/digits_autoencoder.pt``, KL-f2, 2x4x4
latents) serves the round-trip and scale checks, so nothing here trains it. About 40 s on two
shared cores, most of it the three tiny training runs.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from sde_diffusion.apps import sample as sample_app
from sde_diffusion.apps._common import UsageError
from sde_diffusion.apps.train import run as train
from sde_diffusion.config import compose
from sde_diffusion.data.images import DigitsDataset
from sde_diffusion.latent import (
    LatentScale,
    encode_cached,
    file_sha256,
    load_autoencoder,
    measure_latent_scale,
)
from sde_diffusion.models.autoencoder import Autoencoder, AutoencoderLoss
from sde_diffusion.training import CheckpointError, read_log

# Measured on the shipped file: mean |x - D(E(x))| = 0.038 over the 359 held-out digits and
# 0.025 over the 1438 training digits ([-1, 1] scale, 2x compression). The bounds leave room
# for another torch's rounding, and would catch a decoder that ignores its latent (~0.5).
ROUND_TRIP_L1 = 0.05
ROUND_TRIP_TRAIN_GAP = 2.0  # held-out error at most this times the training error (1.55)
AE_RUN = [
    "task=autoencoder", "train_data=digits", "train.batch_size=64", "train.warmup=5",
    "train.checkpoint_every=5", "train.log_every=1", "threads=1", "progress=false",
    "autoencoder.model.ch=8", "train.lr_decay=none",  # the decay's end moves with train.steps
]  # fmt: skip
LATENT_RUN = [
    "train_data=digits", "model=unet_latent", "model.ch=8", "train.batch_size=64",
    "train.steps=8", "train.checkpoint_every=8", "sample.steps=5", "sample.num_samples=16",
    "threads=1", "progress=false",
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """Latents are cached under a temporary folder, not in the user's ~/.cache (module scope:
    set before the module's training fixtures run)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SDE_DIFFUSION_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def digits():
    return DigitsDataset(split="train").data, DigitsDataset(split="test").data


def test_shipped_autoencoder_round_trip_on_held_out_digits(digits):
    train, test = digits
    codec = load_autoencoder()
    assert codec.data_shape == (1, 8, 8) and codec.latent_shape == (2, 4, 4)
    err_test = float((codec.decode(codec.encode(test)) - test).abs().mean())
    err_train = float((codec.decode(codec.encode(train)) - train).abs().mean())
    assert err_test < ROUND_TRIP_L1
    assert err_test < ROUND_TRIP_TRAIN_GAP * err_train


def test_stored_latent_scale_gives_unit_variance_on_the_training_set(digits):
    codec = load_autoencoder()
    u = codec.encode(digits[0]).double()
    # the scale was measured on exactly these images: only float32 encoding error remains
    torch.testing.assert_close(
        u.mean((0, 2, 3)), torch.zeros(2, dtype=torch.float64), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        u.std((0, 2, 3)), torch.ones(2, dtype=torch.float64), atol=1e-4, rtol=0
    )
    assert u.std((0, 2, 3)).sub(1).abs().max() < 1e-4
    # and the scale is far from 1: without it the latents would not have unit variance
    raw = codec.scale.denormalise(u)
    assert raw.std((0, 2, 3)).sub(1).abs().max() > 0.05


def test_latent_scale_round_trip_and_bad_state():
    z = (
        torch.randn(50, 3, 4, 4, dtype=torch.float64)
        * torch.tensor([2.0, 0.5, 3.0]).view(1, 3, 1, 1)
        + 1
    )
    scale = measure_latent_scale(lambda x: x, z, batch_size=7)
    u = scale.normalise(z)
    torch.testing.assert_close(
        u.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        u.std((0, 2, 3)), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(scale.denormalise(u), z)
    again = LatentScale.from_state(scale.state(), 3)
    torch.testing.assert_close(again.scale, scale.scale)
    with pytest.raises(ValueError, match="has 3 channels, the latent 2"):
        LatentScale.from_state(scale.state(), 2)


@pytest.mark.parametrize(
    "ch_mult, kl, latent", [((1, 2), True, (2, 4, 4)), ((1, 2, 2), False, (2, 2, 2))]
)
def test_autoencoder_shapes_dtype_and_loss(ch_mult, kl, latent):
    torch.manual_seed(0)
    ae = Autoencoder(in_channels=1, resolution=8, ch=8, ch_mult=ch_mult, latent_channels=2, kl=kl)
    ae = ae.double()
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64) * 2 - 1
    assert tuple(ae.encode(x).shape) == (4, *latent) and ae.latent_shape((1, 8, 8)) == latent
    recon, mean, logvar = ae(x, generator=torch.Generator().manual_seed(0))
    assert recon.shape == x.shape and recon.dtype == torch.float64 and (logvar is None) == (not kl)
    loss = AutoencoderLoss("l2", kl_weight=1e-3, perceptual_weight=0.1)(ae, x)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in ae.parameters())
    with pytest.raises(ValueError, match=r"takes images of shape \(1, 8x8\), got \(1, 6, 6\)"):
        ae.encode(torch.zeros(1, 1, 6, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="not divisible"):
        Autoencoder(resolution=6, ch_mult=(1, 2, 2))


@pytest.fixture(scope="module")
def ae_runs(tmp_path_factory):
    """``sde-train task=autoencoder``: 10 steps straight; 5 steps, then resumed to 10."""
    root = tmp_path_factory.mktemp("ae")
    full, part = root / "full", root / "part"
    train(compose("train", [*AE_RUN, "train.steps=10"]), full)
    train(compose("train", [*AE_RUN, "train.steps=5"]), part)
    overrides = ["train.steps=10", "resume=true"]
    train(compose("train", [*AE_RUN, *overrides]), part, overrides)
    return full, part


def test_autoencoder_training_resumes_exactly_and_stores_its_scale(ae_runs, digits):
    full, part = ae_runs
    assert [r["loss"] for r in read_log(part / "train_log.csv")] == [
        r["loss"] for r in read_log(full / "train_log.csv")
    ]
    a = load_autoencoder(full / "checkpoints" / "ckpt_00000010.pt")
    b = load_autoencoder(part / "checkpoints" / "ckpt_00000010.pt")
    for (k, v), w in zip(
        a.autoencoder.state_dict().items(), b.autoencoder.state_dict().values(), strict=True
    ):
        assert torch.equal(v, w), k
    u = a.encode(digits[0]).double()
    assert u.std((0, 2, 3)).sub(1).abs().max() < 1e-4
    assert (full / "samples.png").is_file()  # the reconstruction figure


@pytest.fixture(scope="module")
def latent_run(ae_runs, tmp_path_factory):
    """A copy of the 10-step autoencoder and an 8-step latent score model trained on it."""
    root = tmp_path_factory.mktemp("latent")
    ae = root / "ae.pt"
    shutil.copy(ae_runs[0] / "checkpoints" / "ckpt_00000010.pt", ae)
    train(compose("train", [*LATENT_RUN, f"latent={ae}"]), root / "run")
    return ae, root / "run" / "checkpoints" / "ckpt_00000008.pt"


def test_latent_checkpoint_records_its_autoencoder_and_samples_decoded_images(latent_run, tmp_path):
    ae, ckpt = latent_run
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    ref = yaml.safe_load(state["config"])["latent_reference"]
    assert ref["sha256"] == file_sha256(ae) and ref["path"] == str(ae.resolve())
    assert state["data_shape"] == [2, 4, 4] and ref["data_shape"] == [1, 8, 8]
    cfg = compose("sample", [f"checkpoint={ckpt}", "steps=5", "num_samples=130",
                             "solver=ode_euler", "progress=false"])  # fmt: skip
    metrics = sample_app.run(cfg, tmp_path)
    x = np.load(tmp_path / "samples.npz")["x"]
    assert x.shape == (130, 1, 8, 8)  # decoded: the data's shape
    assert metrics["space"] == "latent (scored decoded)" and metrics["nfe"] == 5
    assert np.isfinite(metrics["fd"]) and metrics["fd_floor"] < metrics["fd"]  # 8 steps: poor
    assert (tmp_path / "samples.png").is_file()


def test_encode_cache_is_reused(latent_run, digits, tmp_path):
    codec = load_autoencoder(latent_run[0])
    first = encode_cached(codec, digits[1][:20], tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not a tensor file")  # an unreadable cache is encoded again
    torch.testing.assert_close(encode_cached(codec, digits[1][:20], tmp_path), first)
    assert torch.equal(encode_cached(codec, digits[1][:20], tmp_path), first)


def test_missing_or_changed_autoencoder_is_one_line_error(latent_run, ae_runs, tmp_path):
    ae, ckpt = latent_run
    keep = tmp_path / "keep.pt"
    shutil.copy(ae, keep)
    cfg = compose("sample", [f"checkpoint={ckpt}", "steps=2", "num_samples=4", "progress=false"])
    try:
        ae.unlink()
        with pytest.raises(UsageError, match=r"which is missing: restore that file") as err:
            sample_app.run(cfg, tmp_path / "a")
        assert "\n" not in str(err.value)
        shutil.copy(ae_runs[1] / "checkpoints" / "ckpt_00000005.pt", ae)  # another autoencoder
        with pytest.raises(
            CheckpointError, match=r"has sha256 .* it was changed or replaced"
        ) as err:
            sample_app.run(cfg, tmp_path / "b")
        assert "\n" not in str(err.value)
    finally:
        shutil.copy(keep, ae)


def test_latent_shape_that_does_not_fit_the_model_is_one_line_error(latent_run, tmp_path):
    ae, _ = latent_run
    cfg = compose("train", [*LATENT_RUN, f"latent={ae}", "model=unet_digits_small"])
    with pytest.raises(
        UsageError, match=r"gives latents of shape \(2, 4, 4\), which the model"
    ) as err:
        train(cfg, tmp_path)
    assert "\n" not in str(err.value) and not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    "bad, message",
    [
        ("score", "is not an autoencoder"),
        ("partial", "has no latent scale"),
        ("nothing", "no such file"),
    ],
)
def test_bad_autoencoder_files_are_refused(bad, message, latent_run, ae_runs, tmp_path):
    path = {"score": latent_run[1], "nothing": tmp_path / "none.pt"}.get(bad)
    if bad == "partial":  # a periodic checkpoint: its run did not finish, so no scale yet
        state = torch.load(ae_runs[0] / "checkpoints" / "ckpt_00000010.pt", weights_only=True)
        del state["latent_scale"]
        path = tmp_path / "partial.pt"
        torch.save(state, path)
    cfg = compose("train", [*LATENT_RUN, f"latent={path}"])
    with pytest.raises((UsageError, CheckpointError), match=message):
        train(cfg, tmp_path / "run")


def test_diffusers_adapter_on_a_tiny_random_autoencoder_kl(tmp_path, digits):
    diffusers = pytest.importorskip("diffusers")
    from sde_diffusion.models.autoencoder_diffusers import (
        DiffusersAutoencoder,
        export_diffusers_autoencoder,
    )

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=3, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=4,
    )  # fmt: skip
    ae = DiffusersAutoencoder.from_vae(vae).eval()
    x = digits[0][:64]
    with torch.no_grad():
        assert tuple(ae.encode(x).shape) == (64, 3, 4, 4) and ae.latent_shape((1, 8, 8)) == (
            3,
            4,
            4,
        )
        assert tuple(ae.decode(ae.encode(x)).shape) == (64, 1, 8, 8)
    codec = export_diffusers_autoencoder(vae, x, tmp_path / "vae.pt")
    assert codec.latent_shape == (3, 4, 4)
    u = codec.encode(x).double()  # rebuilt from the file through the allow-list
    torch.testing.assert_close(
        u.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        u.std((0, 2, 3)), torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0
    )
    with torch.no_grad():
        torch.testing.assert_close(
            codec.decode(u.float()), ae.decode(ae.encode(x)), atol=1e-4, rtol=1e-4
        )
    with pytest.raises(ValueError, match="divisible by 2"):
        ae.latent_shape((1, 7, 7))


def test_latent_likelihood_is_labelled(latent_run, tmp_path):
    from sde_diffusion.apps import likelihood

    cfg = compose("likelihood", [f"checkpoint={latent_run[1]}", "num_samples=8", "batch_size=8",
                                 "solver=ode_euler", "steps=4"])  # fmt: skip
    metrics = likelihood.run(cfg, tmp_path)
    assert metrics["likelihood_space"] == "latent" and metrics["dim"] == 32
    assert "does not bound log p(x)" in metrics["likelihood_note"]
    assert json.loads((tmp_path / "metrics.json").read_text())["likelihood_space"] == "latent"


def test_compare_app_scores_a_latent_checkpoint_on_decoded_images(latent_run, tmp_path):
    import csv
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "sde_diffusion.apps.compare", f"checkpoint={latent_run[1]}",
           "solvers=[ode_euler]", "steps=[4]", "num_samples=130", "batch_size=130",
           "progress=false", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = csv.DictReader((tmp_path / "results.csv").open())
    assert row["status"] == "ok" and row["space"] == "latent (scored decoded)"
    assert float(row["fd"]) > float(row["fd_floor"]) > 0
