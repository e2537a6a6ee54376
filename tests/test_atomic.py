"""Atomic writes keep the usual file mode and leave nothing behind when they fail."""

from __future__ import annotations

import os
import stat

import pytest

from sde_diffusion.apps._common import atomic_write_json
from sde_diffusion.atomic import atomic_open
from sde_diffusion.results import write_csv
from sde_diffusion.training.checkpoint import save_checkpoint


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_outputs_get_the_usual_mode(tmp_path, umask_022):
    # mkstemp's 0600 once leaked into metrics.json, results.csv and tuning.json
    atomic_write_json(tmp_path / "metrics.json", {"a": 1})
    write_csv([{"a": 1}], tmp_path / "results.csv")
    save_checkpoint(tmp_path / "c.pt", {"step": 1, "model": {}})
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    want = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert want == 0o644
    for name in ("metrics.json", "results.csv", "c.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
