"""Fault injection at the command line: input read wrongly, reused and shared run directories,
a full disk, bad training data, and sweeps where every run fails.

The apps run in-process through their ``main()`` (Hydra included, about 0.2 s a run); one
test goes through a console script to check what a user sees.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sde_diffusion.apps import _common, compare, sample
from sde_diffusion.apps._common import (
    UsageError,
    WriteError,
    atomic_write_npz,
    check_bool,
    check_float,
    run_app,
)
from sde_diffusion.apps._job import sde_config_name
from sde_diffusion.apps._precheck import precheck
from sde_diffusion.apps._rundir import LOCK, run_in_dir
from sde_diffusion.apps.train import _check_options, dataset_tensor
from sde_diffusion.config import compose
from sde_diffusion.results import collect, read_csv

SMALL = ["num_samples=200", "steps=5", "progress=false", "figure=false"]


def _main(app, argv, monkeypatch, capsys) -> tuple[int, list[str]]:
    """Run an app's console entry point in-process: (exit status, its ``error:`` lines)."""
    monkeypatch.setattr(sys, "argv", [app.__name__, *argv])
    capsys.readouterr()
    try:
        app.main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, [line for line in err.splitlines() if line.startswith("error:")]


# --- booleans and numbers -------------------------------------------------------------------


@pytest.mark.parametrize("value", [False, "no", "No", "off", "FALSE", "false", 0, "0"])
def test_false_spellings(value):
    assert check_bool("denoise", value) is False


@pytest.mark.parametrize("value", [True, "yes", "ON", "true", "True", 1, "1"])
def test_true_spellings(value):
    assert check_bool("denoise", value) is True


@pytest.mark.parametrize("value", ["maybe", 2, None, "", 0.5])
def test_other_values_refused_naming_the_key(value):
    with pytest.raises(UsageError, match=r"denoise must be true or false"):
        check_bool("denoise", value)


def test_denoise_no_samples_without_the_tweedie_step(tmp_path):
    """Hydra hands ``denoise=no`` over as the string 'no': the run must not denoise."""
    cfg = compose("sample", [*SMALL, "denoise=no"])
    assert cfg.denoise == "no"  # what Hydra gives: bool() of it would be True
    metrics = sample.run(cfg, tmp_path)
    assert metrics["denoise"] is False and metrics["nfe"] == 5  # a Tweedie step adds one


def test_denoise_maybe_is_refused_in_one_line(tmp_path):
    exe = shutil.which("sde-sample")
    assert exe
    proc = subprocess.run(
        [exe, *SMALL, "denoise=maybe", f"hydra.run.dir={tmp_path / 'r'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: denoise must be true or false (also yes/no, on/off, 1/0), got 'maybe'"
    ]
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_train_booleans_and_numbers_are_read_as_such():
    cfg = compose("train", ["train.ema_warmup=off", "train.amp=no", "train.lr=1e-3"])
    _check_options(cfg)
    assert cfg.train.ema_warmup is False and cfg.train.amp is False
    assert cfg.train.drop_last is True and cfg.train.lr == 1e-3


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.lr=abc", "train.lr"),
        ("train.max_seconds=abc", "train.max_seconds"),
        ("train.ema_decay=2", "train.ema_decay"),
        ("train.grad_clip=-1", "train.grad_clip"),
        ("train.ema_warmup=maybe", "train.ema_warmup"),
        ("loss.importance_sampling=perhaps", "loss.importance_sampling"),
    ],
)
def test_bad_train_options_name_the_key(override, key):
    with pytest.raises(UsageError, match=rf"^{key} must be"):
        _check_options(compose("train", [override]))


def test_check_float_bounds():
    assert check_float("x", "1e-3", 0, above=True) == 1e-3
    assert check_float("x", None, allow_none=True) is None
    for bad in ("abc", float("nan"), 0, True):
        with pytest.raises(UsageError, match="x must be a number > 0"):
            check_float("x", bad, 0, above=True)


# --- unknown keys and the run directory, before Hydra ---------------------------------------


@pytest.mark.parametrize(
    "config, groups, argv, words",
    [
        ("sample.yaml", ("sde", "solver", "data"), ["bogus_key=1"], ["bogus_key", "options:"]),
        ("sample.yaml", ("sde", "solver", "data"), ["num_sample=1"], ["did you mean num_samples"]),
        ("sample.yaml", ("sde", "solver", "data"), ["solver.bogus=1"], ["solver=euler_maruyama"]),
        (
            "sample.yaml",
            ("sde", "solver", "data"),
            ["solver=pc", "solver.snrr=0.1"],
            ["solver.snrr", "did you mean solver.snr"],
        ),
        (
            "sample.yaml",
            ("sde", "solver", "data"),
            ["solver=pc,euler_maruyama", "solver.snr=0.1"],  # a sweep: every choice must have it
            ["solver.snr", "solver=euler_maruyama"],
        ),
        ("train.yaml", ("sde", "model", "train_data", "train"), ["train.bogus=1"], ["train.bogus"]),
        ("train.yaml", ("train_data",), ["+train_data={_target_: a.B}"], ["conf/train_data/"]),
    ],
)
def test_unknown_keys_are_one_line_with_suggestions(config, groups, argv, words, capsys):
    with pytest.raises(SystemExit) as stop:
        precheck(argv, config, groups)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1, err
    assert all(w in err for w in words), err


@pytest.mark.parametrize(
    "argv",
    [["+bogus_key=1"], ["++steps=3"], ["solver=pc", "solver.snr=0.2"], ["~solver.grid"], ["-m"]],
)
def test_valid_keys_and_appends_pass(argv):
    precheck(argv, "sample.yaml", ("sde", "solver", "data"))  # no SystemExit


def test_unknown_key_refused_by_the_app(tmp_path, monkeypatch, capsys):
    code, errors = _main(sample, ["bogus_key=1", f"hydra.run.dir={tmp_path}"], monkeypatch, capsys)
    assert code == 2 and len(errors) == 1 and "bogus_key" in errors[0]


def test_unwritable_run_dir_is_one_line(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, errors = _main(sample, [*SMALL, f"hydra.run.dir={blocker}/run"], monkeypatch, capsys)
    assert code == 2 and errors == [
        f"error: hydra.run.dir={blocker}/run cannot be created: {blocker} is not a folder"
    ]


# --- reused and shared run directories ------------------------------------------------------


def _stale(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps({"stale": True}))
    np.savez(run_dir / "samples.npz", x=np.zeros((3, 2)))


def test_reused_run_dir_is_refused_and_overwrite_replaces(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _stale(out)
    code, errors = _main(sample, [*SMALL, f"hydra.run.dir={out}"], monkeypatch, capsys)
    assert code == 2 and len(errors) == 1 and "overwrite=true" in errors[0]
    assert json.loads((out / "metrics.json").read_text()) == {"stale": True}  # untouched
    assert not (out / "failure.json").exists()  # a refusal writes nothing there

    argv = [*SMALL, "seed=3", "overwrite=true", f"hydra.run.dir={out}"]
    code, errors = _main(sample, argv, monkeypatch, capsys)
    assert code == 0 and not errors
    assert json.loads((out / "metrics.json").read_text())["seed"] == 3
    assert np.load(out / "samples.npz")["x"].shape == (200, 2)
    assert not (out / LOCK).exists()


def test_overwrite_removes_old_results_before_the_run_starts(tmp_path):
    """A rerun killed halfway can never leave the old metrics.json beside new samples."""
    _stale(tmp_path)
    seen = {}

    def job():
        seen["files"] = sorted(p.name for p in tmp_path.iterdir())
        raise KeyError("ema")  # the rerun fails: no old result may be left to look valid

    assert run_in_dir(job, tmp_path, sample.OUTPUTS, "true", keep_going=True) is None
    assert seen["files"] == [LOCK]
    record = json.loads((tmp_path / "failure.json").read_text())
    assert record["error"] == "KeyError: 'ema'" and record["error_type"] == "KeyError"
    assert [r["status"] for r in collect(tmp_path)] == ["failed"]  # not "incomplete"
    assert not (tmp_path / LOCK).exists()


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_lock_refuses_a_second_run(tmp_path, sleeper, monkeypatch, capsys):
    (tmp_path / LOCK).write_text(f"{sleeper.pid} {os.uname().nodename}")
    code, errors = _main(sample, [*SMALL, f"hydra.run.dir={tmp_path}"], monkeypatch, capsys)
    assert code == 2 and len(errors) == 1
    assert f"in use by another run (pid {sleeper.pid}" in errors[0]
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "samples.npz").exists()
    assert (tmp_path / LOCK).read_text().startswith(str(sleeper.pid))  # still theirs
    assert not (tmp_path / ".hydra").exists()  # refused before Hydra wrote its record there


def test_a_stale_lock_is_taken_over_and_released(tmp_path, sleeper, monkeypatch, capsys):
    (tmp_path / LOCK).write_text(f"{sleeper.pid} {os.uname().nodename}")
    sleeper.kill()
    sleeper.wait()  # the holder died without cleaning up
    held = {}

    def job():
        held["lock"] = (tmp_path / LOCK).read_text()
        return "done"

    assert run_in_dir(job, tmp_path, sample.OUTPUTS, False) == "done"
    assert held["lock"].split()[0] == str(os.getpid())
    assert not (tmp_path / LOCK).exists()


def test_the_lock_is_released_when_the_run_fails(tmp_path, capsys):
    def job():
        raise FloatingPointError("non-finite samples")

    with pytest.raises(SystemExit) as stop:
        run_in_dir(job, tmp_path, sample.OUTPUTS, False)
    assert stop.value.code == 2 and not (tmp_path / LOCK).exists()
    assert "error: non-finite samples" in capsys.readouterr().err


# --- a full disk ----------------------------------------------------------------------------


def test_full_disk_keeps_the_old_file_and_reports_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "samples.npz"
    np.savez(path, x=np.ones(3))

    def savez(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(WriteError) as err:
        atomic_write_npz(path, x=np.zeros(3))
    assert err.value.errno == errno.ENOSPC
    assert str(err.value) == f"no space left on device writing {path}"
    assert np.load(path)["x"].tolist() == [1.0, 1.0, 1.0]  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.npz"]  # no temporary left

    with pytest.raises(SystemExit):
        run_app(lambda: atomic_write_npz(path, x=np.zeros(3)), tmp_path)
    assert capsys.readouterr().err == f"error: no space left on device writing {path}\n"


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root (the injected ENOSPC test covers this)")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)])
    if made.returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs")
    yield mount
    for handler in list(logging.root.handlers):  # Hydra's job log file, left open in-process
        if str(getattr(handler, "baseFilename", "")).startswith(str(mount)):
            handler.close()
            logging.root.removeHandler(handler)
    subprocess.run(["umount", str(mount)], check=True)


def test_sampling_onto_a_full_tmpfs(small_tmpfs, monkeypatch, capsys):
    out = small_tmpfs / "run"
    argv = ["num_samples=20000", "steps=2", "progress=false", f"hydra.run.dir={out}"]
    code, errors = _main(sample, argv, monkeypatch, capsys)
    assert code == 2
    assert errors == [f"error: no space left on device writing {out / 'samples.npz'}"]
    assert not (out / "samples.npz").exists() and not (out / "metrics.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# --- bad training data ----------------------------------------------------------------------


def test_nan_row_in_training_data_is_named():
    data = torch.zeros(10, 2)
    data[7, 1] = math.nan
    data[9, 0] = math.inf
    with pytest.raises(UsageError, match=r"row 7 is not finite \(\[0, nan\]\); 2 of 10 rows"):
        dataset_tensor(SimpleNamespace(data=data))


def test_inf_item_in_a_list_dataset_is_named():
    items = [torch.ones(1, 4, 4) for _ in range(5)]
    items[2][0, 1, 1] = -math.inf
    with pytest.raises(UsageError, match=r"row 2 is not finite .*-inf.*1 of 5 rows"):
        dataset_tensor(items)
    assert dataset_tensor(items[:2]).shape == (2, 1, 4, 4)


# --- what metrics.json and sde-compare report -----------------------------------------------


def test_checkpoint_sde_is_recorded(tmp_path):
    from sde_diffusion.apps import train

    tiny = ["sde=ve", "train.steps=2", "train.batch_size=32", "train_data.n=64"]
    tiny += ["model.hidden=8", "model.embed_dim=8", "sample.steps=2", "sample.num_samples=4"]
    train.run(compose("train", [*tiny, "progress=false"]), tmp_path / "t")
    ckpt = next((tmp_path / "t" / "checkpoints").iterdir())
    cfg = compose("sample", [*SMALL, f"checkpoint={ckpt}"])  # sde=vp by default
    (tmp_path / "s").mkdir()
    metrics = sample.run(cfg, tmp_path / "s", names={"sde": "vp", "solver": "euler_maruyama"})
    assert metrics["sde"] == "ve" and metrics["sde_class"] == "VESDE"


def test_sde_config_names():
    from sde_diffusion.sde import VESDE, VPSDE

    assert sde_config_name(VESDE()) == "ve" and sde_config_name(VPSDE()) == "vp"


def test_compare_exits_nonzero_when_every_run_failed(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise KeyError("ema")

    monkeypatch.setattr(compare, "sample_job", broken)
    argv = ["solvers=[euler_maruyama,ode_euler]", "steps=[5]", *SMALL[:1], "progress=false"]
    code, errors = _main(compare, [*argv, f"hydra.run.dir={tmp_path}"], monkeypatch, capsys)
    assert code == 1 and errors == ["error: all 2 runs failed (reasons in results.csv)"]
    rows = read_csv(tmp_path / "results.csv")
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all(r["error"] == "KeyError: 'ema'" for r in rows)


def test_compare_with_one_good_run_exits_zero(tmp_path, monkeypatch, capsys):
    real = compare.sample_job

    def half_broken(sde, solver, *args, **kwargs):
        if type(solver).__name__ == "Euler":
            raise KeyError("ema")
        return real(sde, solver, *args, **kwargs)

    monkeypatch.setattr(compare, "sample_job", half_broken)
    argv = ["solvers=[euler_maruyama,ode_euler]", "steps=[5]", *SMALL[:1], "progress=false"]
    code, errors = _main(compare, [*argv, f"hydra.run.dir={tmp_path}"], monkeypatch, capsys)
    assert code == 0 and not errors
    rows = read_csv(tmp_path / "results.csv")
    assert sorted(r["status"] for r in rows) == ["failed", "ok"]


def test_describe_is_one_line():
    assert _common.describe(PermissionError(errno.EACCES, "Permission denied", "/x")) == (
        "permission denied: /x"
    )
    assert _common.describe(ValueError("a\nb")) == "a"
