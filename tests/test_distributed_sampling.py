"""Distributed sampling (issue 14): each process draws its shard of the per-sample seeds, rank 0
gathers them in order, and the result equals a one-process run with the same seeds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from sde_diffusion.apps._job import build, sample_job
from sde_diffusion.config import compose

ARGS = ["num_samples=301", "steps=20", "progress=false", "figure=false", "threads=1"]


def test_shards_concatenate_to_the_one_process_samples():
    cfg = compose("sample", ["solver=euler_maruyama"])
    sde, solver, data = build(cfg.sde, "sde"), build(cfg.solver, "solver"), build(cfg.data, "data")
    kw = dict(steps=20, eps=1e-3, num_samples=301, seed=3, device=torch.device("cpu"),
              dtype=torch.float64, batch_size=64)  # fmt: skip
    whole, _ = sample_job(sde, solver, data, data.score_fn(sde), **kw)
    parts = [sample_job(sde, solver, data, data.score_fn(sde), shard=(r, 3), **kw)[0]
             for r in range(3)]  # fmt: skip
    assert [len(p) for p in parts] == [100, 100, 101]
    assert torch.equal(torch.cat(parts), whole)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="needs torchrun")
def test_torchrun_two_gloo_processes_equal_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two, one = tmp_path / "two", tmp_path / "one"
    cmd = ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "sde_diffusion.apps.sample",
           *ARGS, f"hydra.run.dir={two}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cmd = [sys.executable, "-m", "sde_diffusion.apps.sample", *ARGS, f"hydra.run.dir={one}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (np.load(d / "samples.npz")["x"] for d in (two, one))
    assert a.shape == (301, 2) and np.array_equal(a, b)
    m2, m1 = (json.loads((d / "metrics.json").read_text()) for d in (two, one))
    assert m2["processes"] == 2 and m1["processes"] == 1 and m2["tv"] == m1["tv"]
    assert not (two / ".lock").exists()
