"""``sde-train`` end to end (tiny sizes), resuming through the app, ``sde-sample checkpoint=``,
bad input refused before training, and the app under ``torchrun`` with two gloo processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sde_diffusion.apps._common import UsageError
from sde_diffusion.apps._job import build, group_options, score_for
from sde_diffusion.apps.train import dataset_tensor, run
from sde_diffusion.config import compose
from sde_diffusion.training import CheckpointError, read_log

# A thousand 2-D points, a 32-wide MLP and 20-step figures: each run takes ~4 s, mostly imports.
COMMON = [
    "train.batch_size=64",
    "train.checkpoint_every=10",
    "train.keep_last=2",
    "train.log_every=1",
    "sample.steps=20",
    "sample.num_samples=200",
    "threads=1",
    "progress=false",
]
TINY = [*COMMON, "train_data.n=1000", "model.hidden=32", "model.embed_dim=16"]


def _app(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", f"sde_diffusion.apps.{module}", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 30-step run, and a run stopped at step 20 then resumed to 30."""
    root = tmp_path_factory.mktemp("train")
    full, part = root / "full", root / "part"
    for out, steps, resume in ((full, 30, False), (part, 20, False), (part, 30, True)):
        proc = _app(
            "train", *TINY, f"train.steps={steps}", f"resume={resume}", f"hydra.run.dir={out}",
            cwd=root,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
    return full, part


def test_app_writes_checkpoints_log_and_figure(runs):
    full, _ = runs
    assert sorted(p.name for p in (full / "checkpoints").iterdir()) == [
        "ckpt_00000020.pt",
        "ckpt_00000030.pt",
    ]  # keep_last=2
    rows = read_log(full / "train_log.csv")
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert {"loss", "lr", "steps_per_s"} <= set(rows[0])
    assert (full / "samples.png").stat().st_size > 1000
    summary = json.loads((full / "train_summary.json").read_text())
    assert summary["step"] == 30 and summary["checkpoint"].endswith("ckpt_00000030.pt")


def test_app_resume_repeats_the_loss_sequence(runs):
    full, part = runs
    # Exact equality on CPU: the resumed run draws the same batches and noise.
    assert [r["loss"] for r in read_log(part / "train_log.csv")] == [
        r["loss"] for r in read_log(full / "train_log.csv")
    ]


def test_sample_app_loads_checkpoint_with_its_sde(runs, tmp_path):
    full, _ = runs
    ckpt = full / "checkpoints" / "ckpt_00000030.pt"
    proc = _app(
        "sample", f"checkpoint={ckpt}", "sde=ve", "solver=ode_heun", "steps=10",
        "num_samples=200", "progress=false", "figure=false", f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["sde_class"] == "VPSDE"  # the SDE it was trained with, not sde=ve
    assert metrics["nfe"] == 20 and metrics["num_samples"] == 200


def test_tune_grid_app_tunes_a_checkpoint(runs, tmp_path):
    full, _ = runs
    ckpt = full / "checkpoints" / "ckpt_00000030.pt"
    proc = _app(
        "tune_grid", f"checkpoint={ckpt}", "sde=ve", "steps=3", "pilot=64", "reference_steps=20",
        "max_evals=10", "progress=false", f"hydra.run.dir={tmp_path}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads((tmp_path / "tuning.json").read_text())
    assert rec["sde"] == "VPSDE" and len(rec["levels"]) == 4  # tuned with its own SDE
    assert f"checkpoint={ckpt}" in rec["sample_overrides"]  # the logged command samples it
    assert rec["objective"] <= rec["initial_objective"]


def test_likelihood_app_on_a_checkpoint(runs, tmp_path):
    # the divergence needs the trained score to be differentiable in x (it once ran under
    # torch.no_grad() and every checkpoint likelihood failed)
    full, _ = runs
    ckpt = full / "checkpoints" / "ckpt_00000030.pt"
    proc = _app(
        "likelihood", f"checkpoint={ckpt}", "num_samples=32", "batch_size=32",
        "solver=ode_rk4", "steps=20", f"hydra.run.dir={tmp_path}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_corrupt_checkpoint_refused_by_sampler(runs, tmp_path):
    full, _ = runs
    bad = tmp_path / "cut.pt"
    bad.write_bytes((full / "checkpoints" / "ckpt_00000030.pt").read_bytes()[:500])
    cfg = compose("sample")
    with pytest.raises(CheckpointError, match="cut.pt"):
        score_for(str(bad), build(cfg.sde, "sde"), build(cfg.data, "data"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train_data.n=100", "train.batch_size=512"], "larger than the data set"),
        (["train_data.n=100", "model=unet"], "takes square images"),
        (["train_data=digits"], "takes flat vectors"),
        (["train_data=digits", "model=unet"], "model.in_channels=3 does not fit"),
        (["train_data=digits", "model=unet_digits", "model.resolution=16"], "model.resolution=16"),
        (["train_data.n=100", "model.dim=3"], "model.dim=3 does not fit"),
        (["train_data.n=100", "train.steps=0"], "train.steps"),
        (["train_data.n=100", "resume=true"], "holds no checkpoint"),
        (["train_data.n=100", "parametrisation=nope"], "parametrisation"),
    ],
)
def test_bad_input_refused_before_training(overrides, message, tmp_path):
    cfg = compose("train", [*COMMON, *overrides])
    with pytest.raises(UsageError, match=message):
        run(cfg, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_existing_checkpoints_need_resume(runs, tmp_path):
    shutil.copytree(runs[0] / "checkpoints", tmp_path / "checkpoints")
    with pytest.raises(UsageError, match="resume=true"):
        run(compose("train", TINY), tmp_path)


def test_unknown_dataset_refused_in_one_line(tmp_path):
    proc = _app("train", "train_data=nope", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "train_data='nope' is not a known train_data" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", group_options("train_data"))
def test_every_train_data_config_builds(name, tmp_path):
    cfg = compose("train", [f"train_data={name}"])
    if "n" in cfg.train_data:
        cfg.train_data.n = 64
    if "path" in cfg.train_data:  # the user's own file (train_data=array)
        (tmp_path / "rows.csv").write_text("".join(f"{i},{i % 7}\n" for i in range(50)))
        cfg.train_data.path = str(tmp_path / "rows.csv")
    data = dataset_tensor(build(cfg.train_data, "train_data"))
    assert data.dtype == torch.float32 and data.ndim in (2, 4) and torch.isfinite(data).all()


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="needs torchrun")
def test_app_under_torchrun_two_gloo_processes(tmp_path):
    cmd = [
        "torchrun", "--standalone", "--nproc_per_node=2", "-m", "sde_diffusion.apps.train",
        *TINY, "train.steps=12", f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 12
    state = torch.load(tmp_path / "checkpoints" / "ckpt_00000012.pt", weights_only=True)
    assert len(state["rng"]) == 2  # each rank's generators, for an exact resume
    assert [r["step"] for r in read_log(tmp_path / "train_log.csv")] == list(range(1, 13))
