"""Training on any vector data (issue 18): a mixture typed on the command line, scored exactly
after training; the user's own CSV / npy / npz files, standardised and mapped back; bad files
refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sde_diffusion.apps._common import UsageError
from sde_diffusion.apps.likelihood import run as likelihood_run
from sde_diffusion.apps.sample import run as sample_run
from sde_diffusion.apps.train import run as train_run
from sde_diffusion.config import compose
from sde_diffusion.data.arrays import ArrayDataset

TRAIN = ["train.batch_size=256", "train.checkpoint_every=10000", "threads=1", "progress=false",
         "sample.steps=5", "sample.num_samples=16", "model.hidden=64", "model.embed_dim=32",
         "train.steps=600", "train.warmup=50"]  # fmt: skip
MIXTURE = ["train_data=gaussian_mixture", "train_data.means=[[-1,2],[2,-1]]",
           "train_data.stds=[0.3,0.6]", "train_data.weights=[0.4,0.6]", "train_data.n=20000"]  # fmt: skip


def _checkpoint(out):
    return next((out / "checkpoints").glob("ckpt_*.pt"))


def test_typed_mixture_trains_and_is_scored_against_its_exact_law(tmp_path):
    train_run(compose("train", [*TRAIN, *MIXTURE]), tmp_path / "train")
    ckpt = _checkpoint(tmp_path / "train")
    (tmp_path / "s").mkdir()
    cfg = compose("sample", ["steps=200", "num_samples=5000", "progress=false", "figure=false",
                             f"checkpoint={ckpt}"])  # fmt: skip
    metrics = sample_run(cfg, tmp_path / "s")
    # 600 steps of a 64-wide MLP: measured 1.01-1.04x the floor (2 sampling seeds, 2 trainings
    # of 600 and 1200 steps); an untrained or wrongly scored model is many times the floor.
    assert "tv" in metrics and metrics["tv_ratio"] < 1.3, metrics["tv_ratio"]


@pytest.fixture(scope="module")
def points(tmp_path_factory):
    """Two clusters far from the origin, on scales 15 and 0.1: standardisation matters."""
    rng = np.random.default_rng(0)
    k = rng.integers(0, 2, 6000)
    x = np.stack([np.where(k == 0, rng.normal(100, 5, 6000), rng.normal(130, 3, 6000)),
                  rng.normal(-2, 0.1, 6000)], axis=1)  # fmt: skip
    path = tmp_path_factory.mktemp("data") / "points.csv"
    np.savetxt(path, x, delimiter=",", header="a,b", comments="")
    return path, x


def test_csv_round_trip_undoes_the_standardisation(points, tmp_path):
    path, x = points
    train_run(
        compose("train", [*TRAIN, "train_data=array", f"train_data.path={path}"]), tmp_path / "t"
    )
    state = torch.load(_checkpoint(tmp_path / "t"), weights_only=True)
    assert state["data_transform"]["mean"][0] == pytest.approx(x[:, 0].mean(), rel=0.01)
    (tmp_path / "s").mkdir()
    cfg = compose("sample", ["steps=100", "num_samples=3000", "progress=false",
                             f"checkpoint={_checkpoint(tmp_path / 't')}"])  # fmt: skip
    metrics = sample_run(cfg, tmp_path / "s")
    assert metrics["reference"] == "the data set's test split" and "mmd_floor" in metrics
    got = np.load(tmp_path / "s" / "samples.npz")["x"]
    # In the data's units: means within 5 % of a column's std (n = 3000 gives ~2 % of noise
    # for the mean), stds within 10 %; in model units they would be ~0 and ~1.
    assert np.all(np.abs(got.mean(0) - x.mean(0)) < 0.05 * x.std(0)), (got.mean(0), x.mean(0))
    assert np.allclose(got.std(0), x.std(0), rtol=0.1), (got.std(0), x.std(0))
    (tmp_path / "l").mkdir()
    lk = likelihood_run(compose("likelihood", ["num_samples=64", "batch_size=64", "solver=ode_rk4",
                        "steps=20", f"checkpoint={_checkpoint(tmp_path / 't')}"]), tmp_path / "l")  # fmt: skip
    # per-point log-density in data units: the 2-D Gaussian fit's NLL (~2.9 nats) is a bound
    # a trained model should beat or be near; in model units it would be ~0.4 nats lower
    assert 1.5 < lk["nll_mean"] < 3.5, lk["nll_mean"]


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("a,b\n1,2\n3,x\n", "line 3 is not numeric \\('x'\\)"),
        ("1,2\n3,nan\n4,5\n6,7\n", "row 1 is not finite"),
        ("1,2\n3\n", "line 2 has 1 columns"),
        ("1,5\n2,5\n3,5\n4,5\n5,5\n", "column 1 is constant"),
    ],
)
def test_bad_files_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "x.csv" if content is None else _write(tmp_path, "x.csv", content)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        ArrayDataset(str(path))
    assert "\n" not in str(err.value)


def test_bad_arrays_and_options_refused(tmp_path):
    np.save(tmp_path / "flat.npy", np.arange(10.0))
    with pytest.raises(ValueError, match=r"got \(10,\); a single column must be \(N, 1\)"):
        ArrayDataset(str(tmp_path / "flat.npy"))
    np.savez(tmp_path / "two.npz", a=np.ones((5, 2)), b=np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"set train_data.key to one of \['a', 'b'\]"):
        ArrayDataset(str(tmp_path / "two.npz"))
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object))
    with pytest.raises(ValueError, match="cannot be read"):  # never unpickled
        ArrayDataset(str(tmp_path / "obj.npy"))
    with pytest.raises(ValueError, match="train_data.path is required"):
        ArrayDataset()
    with pytest.raises(ValueError, match="standardise must be true or false"):
        ArrayDataset(str(tmp_path / "flat.npy"), standardise="maybe")


def test_model_dimension_must_fit_the_file(points, tmp_path):
    cfg = compose(
        "train", [*TRAIN, "train_data=array", f"train_data.path={points[0]}", "model.dim=3"]
    )
    with pytest.raises(UsageError, match="model.dim=3 does not fit the data of shape \\(2,\\)"):
        train_run(cfg, tmp_path)
