"""Fault injection, checkpoints: malicious configs and pickles, damaged files, resume after
kill -9 / SIGTERM / SIGINT, and a resume that must continue the run as it was configured.

Every attack asserts that nothing happened (the marker file is absent, the victim intact), not
only that an error was raised. About 30 s on one CPU thread, most of it three short
subprocesses that are killed or signalled mid-training.
"""

from __future__ import annotations

import base64
import logging
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from sde_diffusion.apps._common import UsageError
from sde_diffusion.apps._job import build, score_for
from sde_diffusion.apps._model import load_trained
from sde_diffusion.apps.train import run
from sde_diffusion.config import compose
from sde_diffusion.training import CheckpointError, load_checkpoint
from sde_diffusion.training.rebuild import UnsafeConfigError, allowed_targets, rebuild

TINY = [
    "train.batch_size=64", "train.checkpoint_every=5", "train.keep_last=3", "train.log_every=5",
    "sample.steps=5", "sample.num_samples=50", "threads=1", "progress=false",
    "train_data.n=1000", "model.hidden=16", "model.embed_dim=8", "train.warmup=5",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A valid 10-step checkpoint (VE, eps parametrisation: not the defaults)."""
    out = tmp_path_factory.mktemp("trained")
    run(compose("train", [*TINY, "train.steps=10", "sde=ve", "parametrisation=eps"]), out)
    return out / "checkpoints" / "ckpt_00000010.pt"


def _with_config(src: Path, dst: Path, edit) -> Path:
    state = torch.load(src, weights_only=True)
    cfg = yaml.safe_load(state["config"])
    edit(cfg)
    state["config"] = yaml.safe_dump(cfg)
    torch.save(state, dst)
    return dst


class _Touch:
    """A pickle payload: unpickling it creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _attacks(tmp: Path) -> dict:
    marker, victim = tmp / "pwned", tmp / "victim.txt"
    payload = base64.b64encode(pickle.dumps(_Touch(marker))).decode()
    torch_load = {  # torch.load(io.BytesIO(b64decode(...)), weights_only=False): runs code
        "_target_": "torch.load",
        "f": {"_target_": "io.BytesIO", "initial_bytes": {"_target_": "base64.b64decode", "s": payload}},
        "weights_only": False,
    }  # fmt: skip
    return {
        "torch_load_pickle": ("sde", torch_load),
        "open_truncates": ("sde", {"_target_": "builtins.open", "file": str(victim), "mode": "w"}),
        "copyfile_nested": (
            "model",
            {"_target_": "sde_diffusion.models.MLP", "dim": 2,
             "hidden": {"_target_": "shutil.copyfile", "src": __file__, "dst": str(victim)}},
        ),  # fmt: skip
        "args_key": ("sde", {"_target_": "sde_diffusion.sde.VPSDE", "_args_": [0.1, 20.0]}),
        "partial_key": ("sde", {"_target_": "sde_diffusion.sde.VPSDE", "_partial_": True}),
        "wrong_group": ("sde", {"_target_": "sde_diffusion.models.MLP", "dim": 2}),
        "interpolation": ("sde", {"_target_": "sde_diffusion.sde.VPSDE", "beta_min": "${oc.env:HOME}"}),
    }  # fmt: skip


def _intact(tmp: Path) -> None:
    assert not (tmp / "pwned").exists()
    assert (tmp / "victim.txt").read_text() == "keep me"


@pytest.mark.parametrize("attack", sorted(_attacks(Path("."))))
def test_malicious_config_refused_before_anything_runs(trained, tmp_path, attack):
    (tmp_path / "victim.txt").write_text("keep me")
    group, node = _attacks(tmp_path)[attack]
    evil = _with_config(trained, tmp_path / "evil.pt", lambda cfg: cfg.__setitem__(group, node))
    with pytest.raises(UnsafeConfigError) as err:
        load_trained(evil)
    assert "\n" not in str(err.value)
    _intact(tmp_path)
    with pytest.raises(UnsafeConfigError):  # the apps' path, through sde-sample's helpers
        score_for(str(evil), build(compose("sample").sde, "sde"), None)
    _intact(tmp_path)


def test_unknown_class_named_in_one_line_through_the_app(trained, tmp_path):
    (tmp_path / "victim.txt").write_text("keep me")
    evil = _with_config(trained, tmp_path / "evil.pt", lambda cfg: cfg.__setitem__(
        "sde", {"_target_": "builtins.open", "file": str(tmp_path / "victim.txt"), "mode": "w"}))  # fmt: skip
    cmd = [sys.executable, "-m", "sde_diffusion.apps.sample", f"checkpoint={evil}", "steps=2",
           "num_samples=10", "progress=false", f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert "'builtins.open' is not an allowed class" in proc.stderr
    assert "Traceback" not in proc.stderr
    _intact(tmp_path)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_pickle_payload_in_the_file_is_not_run(trained, tmp_path):
    marker = tmp_path / "pwned"
    state = torch.load(trained, weights_only=True)
    state["extra"] = _Touch(marker)
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_trained(tmp_path / "evil.pt")
    assert not marker.exists()


def test_allow_list_is_the_packaged_classes():
    assert allowed_targets("sde") == {
        "sde_diffusion.sde.VPSDE", "sde_diffusion.sde.SubVPSDE", "sde_diffusion.sde.VESDE"
    }  # fmt: skip
    assert allowed_targets("model") == {"sde_diffusion.models.MLP", "sde_diffusion.models.UNet"}
    sde = rebuild({"_target_": "sde_diffusion.sde.VESDE", "sigma_max": 10.0}, "sde")
    assert type(sde).__name__ == "VESDE" and sde.sigma_max == 10.0


def _corrupt_in_place(path: Path, record: str) -> Path:
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(record))
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 64
    data[start : start + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return path


def _ema_record(path: Path) -> str:
    """The name of the archive record holding the EMA's first tensor of >= 64 values."""
    import zipfile

    state = torch.load(path, weights_only=True)
    want = next(v for v in state["ema"].values() if v.numel() >= 64).numpy().tobytes()[:64]
    with zipfile.ZipFile(path) as z:
        return next(n for n in z.namelist() if "/data/" in n and z.read(n)[:64] == want)


@pytest.mark.parametrize("damage", ["truncated", "zero_bytes", "in_place", "no_ema", "no_config"])
def test_damaged_checkpoint_refused_in_one_line(trained, tmp_path, damage):
    bad = tmp_path / "bad.pt"
    raw = trained.read_bytes()
    if damage == "truncated":
        bad.write_bytes(raw[: len(raw) // 2])
    elif damage == "zero_bytes":
        bad.write_bytes(b"")
    elif damage == "in_place":  # 64 bytes of EMA weights overwritten: it loaded silently before
        bad.write_bytes(raw)
        _corrupt_in_place(bad, _ema_record(trained))
    else:
        state = torch.load(trained, weights_only=True)
        del state[damage.removeprefix("no_")]
        torch.save(state, bad)
    with pytest.raises(CheckpointError) as err:
        load_trained(bad)
    message = str(err.value)
    assert "bad.pt" in message and "\n" not in message
    if damage == "in_place":
        assert "CRC" in message
    if damage.startswith("no_"):
        assert repr(damage.removeprefix("no_")) in message


def test_state_dict_mismatch_names_keys_and_shapes(trained, tmp_path):
    state = torch.load(trained, weights_only=True)
    key = next(k for k in state["ema"] if k.endswith("weight") and state["ema"][k].ndim == 2)
    state["ema"][key] = torch.zeros(3, 3)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch .*\(3, 3\) in the file"):
        load_trained(tmp_path / "shape.pt")
    state["ema"]["module.bogus"] = state["ema"].pop(key)
    torch.save(state, tmp_path / "keys.pt")
    with pytest.raises(CheckpointError, match="missing keys .*unexpected keys .*bogus"):
        load_trained(tmp_path / "keys.pt")


# --- resume ------------------------------------------------------------------------------
def test_resume_takes_the_stored_config_and_refuses_conflicts(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained.parent.parent, run_dir)
    with pytest.raises(UsageError, match=r"resume: sde=vp conflicts .*VESDE"):
        run(compose("train", ["resume=true"]), run_dir, ["sde=vp", "resume=true"])
    with pytest.raises(UsageError, match=r"train.lr=0.1 conflicts .*0.002"):
        run(compose("train", ["resume=true", "train.lr=0.1"]), run_dir, ["train.lr=0.1"])
    # current defaults (VP, EDM) are not taken: the run goes on as VE / eps
    summary = run(compose("train", ["resume=true", "train.steps=12"]), run_dir, ["train.steps=12"])
    assert summary["step"] == 12
    trained12 = load_trained(run_dir / "checkpoints" / "ckpt_00000012.pt")
    assert type(trained12.sde).__name__ == "VESDE"
    assert trained12.model.parametrisation == "eps"


def test_resume_refuses_a_stored_model_outside_the_allow_list_before_importing_it(
    trained, tmp_path
):
    """Resume reads the stored config before building it (the model config is filled in from
    the data's shape by inspecting the class it names): an unknown ``_target_`` is refused
    first, so its module is never imported."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    _with_config(trained, run_dir / "checkpoints" / trained.name,
                 lambda cfg: cfg["model"].__setitem__("_target_", "antigravity.Fly"))  # fmt: skip
    with pytest.raises(UnsafeConfigError, match="'antigravity.Fly' is not an allowed class"):
        run(compose("train", ["resume=true", "train.steps=12"]), run_dir, ["train.steps=12"])
    assert "antigravity" not in sys.modules


def _train_proc(out: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sde_diffusion.apps.train", *TINY, "train.steps=100000",
           "train.max_seconds=null", "train.checkpoint_every=5", f"hydra.run.dir={out}", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(out: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    start = time.monotonic()
    while not list((out / "checkpoints").glob("ckpt_*.pt")):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() - start < timeout
        time.sleep(0.02)


def test_interrupted_runs_resume_to_the_same_weights(tmp_path, caplog):
    """kill -9 (at a random moment), SIGTERM and SIGINT mid-training; each run then resumes to
    step 60 and must end with the weights of an uninterrupted run, bit for bit (CPU)."""
    steps = ["train.steps=60"]
    ref = tmp_path / "ref"  # no lr decay: the killed runs are set for 100,000 steps
    run(compose("train", [*TINY, *steps, "train.lr_decay=none"]), ref)
    want = torch.load(ref / "checkpoints" / "ckpt_00000060.pt", weights_only=True)
    rng = random.Random(0)
    for how in ("kill", "SIGTERM", "SIGINT"):
        out = tmp_path / how
        proc = _train_proc(out, "train.lr_decay=none")
        _wait_for_checkpoint(out, proc)
        if how == "kill":
            time.sleep(rng.uniform(0.0, 0.3))
            proc.kill()
            proc.wait(30)
        else:
            signum = getattr(signal, how)
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 128 + signum, err[-2000:]
            line = [x for x in err.splitlines() if x.startswith("error:")]
            assert len(line) == 1 and f"interrupted by {how} at step" in line[0], err[-2000:]
            assert "resume with: sde-train" in line[0] and "Traceback" not in err
            step = int(line[0].split("at step ")[1].split(";")[0])
            assert (out / "checkpoints" / f"ckpt_{step:08d}.pt").is_file()
        (out / "checkpoints" / ".ckpt_99999999.pt.orphan.tmp").write_bytes(b"half a write")
        latest = sorted((out / "checkpoints").glob("ckpt_*.pt"))[-1]
        if int(latest.stem[5:]) >= 60:
            continue  # the process got further than the target (a very slow kill)
        run(compose("train", ["resume=true", *steps]), out, steps)
        got = torch.load(out / "checkpoints" / "ckpt_00000060.pt", weights_only=True)
        for part in ("model", "ema"):
            for k, v in want[part].items():
                assert torch.equal(got[part][k], v), (how, part, k)
        assert not list((out / "checkpoints").glob("*.tmp"))


def test_resume_falls_back_past_an_unreadable_newest_checkpoint(trained, tmp_path, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(trained.parent.parent, run_dir)
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))
    newest = ckpts[-1]
    newest.write_bytes(newest.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING):
        summary = run(compose("train", ["resume=true"]), run_dir, [])
    assert any("skipping unreadable checkpoint" in r.message and newest.name in r.message
               for r in caplog.records)  # fmt: skip
    assert summary["step"] == 10 and summary["steps_run"] == 10 - int(ckpts[-2].stem[5:])
    load_checkpoint(newest)  # rewritten by the resumed run, readable again


def test_sampling_app_on_sigterm_writes_failure_not_metrics(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sde_diffusion.apps.sample", "steps=200000", "num_samples=2000",
           "solver=euler_maruyama", "progress=false", f"hydra.run.dir={out}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    while not (out / ".hydra" / "config.yaml").exists():
        assert proc.poll() is None and time.monotonic() - start < 60, proc.stderr.read()
        time.sleep(0.02)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    failure = yaml.safe_load((out / "failure.json").read_text())
    assert failure["error"].startswith("interrupted by SIGTERM")
    assert not (out / "metrics.json").exists() and not (out / "samples.npz").exists()


def test_wall_clock_guard_says_so(tmp_path, caplog):
    cfg = compose("train", [*TINY, "train.steps=100000", "train.max_seconds=0.2"])
    with caplog.at_level(logging.WARNING):
        summary = run(cfg, tmp_path)
    assert summary["stopped_by"] == "max_seconds" and 0 < summary["step"] < 100000
    lines = [r.message for r in caplog.records if "wall-clock guard" in r.message]
    assert len(lines) == 1 and f"at step {summary['step']} of train.steps=100000" in lines[0]
    saved = yaml.safe_load((tmp_path / "train_summary.json").read_text())
    assert saved["stopped_by"] == "max_seconds"
