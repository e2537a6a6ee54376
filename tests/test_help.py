"""Each app's ``--help``: what it does, its own groups with their options, its own keys."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sde_diffusion.apps._help import help_text
from sde_diffusion.apps._job import group_options

APPS = {
    "sample": ("sde-sample", ("sde", "solver", "data"), ("steps", "checkpoint", "denoise")),
    "compare": ("sde-compare", ("data",), ("solvers", "sdes", "from_dir")),
    "likelihood": ("sde-likelihood", ("sde", "solver", "data"), ("num_samples", "trace")),
    "tune_grid": ("sde-tune-grid", ("sde", "solver", "data"), ("pilot", "max_evals")),
    "train": ("sde-train", ("sde", "model", "train_data", "train", "solver"), ("resume",)),
    "restore": (
        "sde-restore",
        ("sde", "solver", "data", "operator", "method"),
        ("mask", "factor", "observation"),
    ),
    "train_classifier": (
        "sde-train-classifier",
        ("sde", "train_data", "classifier_net"),
        ("steps", "batch_size"),
    ),  # fmt: skip
}


@pytest.mark.parametrize("module", sorted(APPS))
def test_help_lists_the_apps_own_groups_and_keys(module):
    app, groups, keys = APPS[module]
    mod = __import__(f"sde_diffusion.apps.{module}", fromlist=["main"])
    text = help_text(app, mod.__doc__, f"{module}.yaml", groups)
    assert text.startswith(f"{app}: ") and "``" not in text
    for group in groups:
        assert f"  {group} (default " in text and ", ".join(group_options(group)) in text
    for other in {"model", "train_data", "train"} - set(groups):
        assert f"  {other} (default" not in text  # Hydra's generic help listed these
    for key in keys:
        assert f"\n  {key}:" in text
    assert "hydra:" not in text and "defaults:" not in text


def test_help_from_the_command_line_exits_zero():
    cmd = [sys.executable, "-m", "sde_diffusion.apps.sample", "--help"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("sde-sample: draw samples")
