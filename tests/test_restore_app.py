"""``sde-restore`` in-process (``run(cfg, out_dir)``): every operator, the exact posterior mean
of a mixture prior, observations from files, a trained checkpoint, and one-line refusals."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from omegaconf import OmegaConf

from sde_diffusion.apps import restore
from sde_diffusion.apps._common import describe
from sde_diffusion.apps._precheck import precheck
from sde_diffusion.config import compose

FAST = ["num_samples=400", "steps=40", "progress=false"]


def _run(tmp_path, *overrides, name="run", edit=None):
    cfg = compose("restore", [*FAST, *overrides])
    if edit is not None:
        edit(cfg)
    out = tmp_path / name
    out.mkdir()
    return restore.run(cfg, out), out


def test_inpainting_a_mixture_writes_what_it_claims(tmp_path):
    """SMC on eight_gaussians, x_2 observed: reconstructions share y, their mean is the exact
    posterior mean to within 4 posterior stds / sqrt(n) (16 particles: near exact)."""
    metrics, out = _run(tmp_path, "method=smc", "method.particles=16")
    with np.load(out / "restore.npz") as f:
        x, y, truth, mean = f["x"], f["y"], f["x_true"], f["posterior_mean"]
    assert x.shape == (400, 2) and y.shape == (1,) and truth.shape == (2,)
    assert np.abs(x[:, 1] - y[0]).max() < 0.05  # pinned at alpha_eps y
    assert metrics["nfe"] == 40 * 16 and metrics["method_class"].startswith("SMC")
    assert metrics["solver_class"] is None and "tv" not in metrics  # noiseless: no 2-D density
    assert metrics["posterior_mean_rms_error"] < 4 * metrics["posterior_rms_std"] / 400**0.5
    assert np.abs(mean[1] - y[0]) < 1e-6
    assert (out / "restore.png").stat().st_size > 10_000 and not (out / "failure.json").exists()
    assert json.loads((out / "metrics.json").read_text())["seed"] == 0


@pytest.mark.parametrize(
    "overrides",
    [
        ["operator=superres", "factor=2", "method=pigdm"],
        ["operator=colourise", "method=dps", "method.sigma=0.2"],
        ["operator=denoise", "method=repaint", "method.jump=5", "method.resample=2"],
        ["operator=inpaint", "mask=left", "method=replacement", "solver=ode_heun"],
    ],
    ids=lambda o: o[0],
)
def test_every_operator_on_a_mixture(tmp_path, overrides):
    metrics, out = _run(tmp_path, *overrides)
    if "operator=denoise" in overrides:  # sigma_y = 0.2: a proper 2-D posterior, its TV
        assert 0 < metrics["tv_floor"] < metrics["tv"] < 3 * metrics["tv_floor"]
    with np.load(out / "restore.npz") as f:
        assert f["x"].shape == (400, 2) and np.isfinite(f["x"]).all()
        assert "posterior_mean" in f.files
    assert metrics["posterior_mean_rms_error"] < metrics["posterior_rms_std"]


def _digits(cfg):
    cfg.data = OmegaConf.create({"_target_": "sde_diffusion.datasets.digit_mixture"})


@pytest.mark.parametrize(
    "overrides",
    [
        ["operator=superres", "factor=2"],
        ["operator=inpaint", "mask=center"],
        ["operator=colourise"],
    ],
    ids=lambda o: o[0],
)
def test_images_with_an_exact_posterior(tmp_path, overrides):
    """The 1x8x8 digit mixture: image observations, the exact posterior mean and a figure."""
    metrics, out = _run(tmp_path, *overrides, "num_samples=16", "method=pigdm", edit=_digits)
    with np.load(out / "restore.npz") as f:
        assert f["x"].shape == (16, 1, 8, 8) and f["posterior_mean"].shape == (1, 8, 8)
    assert metrics["posterior_mean_rms_error"] < 0.5
    assert (out / "restore.png").stat().st_size > 10_000


def test_observation_from_npz_and_image_files(tmp_path):
    np.savez(tmp_path / "obs.npz", y=np.array([1.5]))
    _, out = _run(tmp_path, f"observation={tmp_path / 'obs.npz'}", "method=replacement")
    with np.load(out / "restore.npz") as f:
        assert f["y"].tolist() == [1.5] and "x_true" not in f.files
        assert np.abs(f["x"][:, 1] - 1.5).max() < 0.05  # x_2 observed: pinned at alpha_eps y
    from PIL import Image

    Image.fromarray(np.full((4, 4), 255, dtype=np.uint8)).save(tmp_path / "low.png")
    _, out = _run(tmp_path, "operator=superres", "factor=2", f"observation={tmp_path / 'low.png'}",
                  "num_samples=4", name="img", edit=_digits)  # fmt: skip
    with np.load(out / "restore.npz") as f:
        assert np.allclose(f["y"], 1.0) and f["x"].shape == (4, 1, 8, 8)


def test_a_trained_checkpoint(tmp_path):
    from sde_diffusion.apps import train

    tiny = ["sde=ve", "train.steps=2", "train.batch_size=32", "train_data.n=64", "progress=false"]
    tiny += ["model.hidden=8", "model.embed_dim=8", "sample.steps=2", "sample.num_samples=4"]
    train.run(compose("train", tiny), tmp_path / "t")
    ckpt = next((tmp_path / "t" / "checkpoints").iterdir())
    metrics, out = _run(tmp_path, f"checkpoint={ckpt}", "method=pigdm", "num_samples=8")
    assert metrics["sde_class"] == "VESDE" and "posterior_mean_rms_error" not in metrics
    with np.load(out / "restore.npz") as f:
        assert f["x"].shape == (8, 2) and np.isfinite(f["x"]).all() and "x_true" in f.files


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["operator=superres", "factor=3"], "factor 3 does not divide the size 2 of event axis 0"),
        (["operator=superres", "factor=0"], "factor must be an integer >= 1"),
        (["mask=diagonal"], "mask='diagonal' is not a named mask; choose one of left, right"),
        (["observation=/no/such/obs.npz"], "observation='/no/such/obs.npz': no such file"),
        (["method=dps"], "give DPS(sigma=...)"),
        (["method.particles=0", "method=smc"], "SMC particles must be an integer >= 1"),
    ],
)
def test_bad_input_is_one_line(tmp_path, overrides, words):
    with pytest.raises(Exception) as err:
        _run(tmp_path, *overrides)
    text = describe(err.value)  # the line run_app prints
    assert words in text and "\n" not in text


def test_mask_file_of_the_wrong_shape(tmp_path):
    np.save(tmp_path / "m.npy", np.array([1, 0, 1]))
    with pytest.raises(ValueError, match=r"has shape \(3,\), but the events have shape \(2,\)"):
        _run(tmp_path, f"mask={tmp_path / 'm.npy'}")


@pytest.mark.parametrize(
    ("arg", "words"),
    [("operator=blur", "operator='blur' is not a known operator; choose one of colourise, "
      "denoise, inpaint, superres"), ("method=ddim", "method='ddim' is not a known method")],
)  # fmt: skip
def test_unknown_operator_or_method(arg, words, capsys):
    with pytest.raises(SystemExit) as err:
        precheck([arg], "restore.yaml", restore.GROUPS)
    assert err.value.code == 2
    msg = capsys.readouterr().err.strip()
    assert words in msg and "\n" not in msg


def test_console_script_reports_bad_input_in_one_line(tmp_path):
    """The entry point end to end: the precheck, the run folder, failure.json, exit status 2."""
    exe = shutil.which("sde-restore")
    assert exe, "console script sde-restore is not installed"
    out = tmp_path / "bad"
    proc = subprocess.run([exe, "operator=superres", "factor=3", f"hydra.run.dir={out}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "factor 3 does not divide" in proc.stderr
    assert "factor 3" in json.loads((out / "failure.json").read_text())["error"]


def test_help_lists_operators_methods_and_keys():
    from sde_diffusion.apps._help import help_text
    from sde_diffusion.apps._job import group_options

    text = help_text("sde-restore", restore.__doc__, "restore.yaml", restore.GROUPS)
    assert text.startswith("sde-restore: solve an inverse problem") and "``" not in text
    for group in ("operator", "method"):
        assert f"  {group} (default " in text and ", ".join(group_options(group)) in text
    for key in ("mask", "factor", "observation", "checkpoint"):
        assert f"\n  {key}:" in text


def test_a_trained_image_checkpoint(tmp_path):
    """A (2-step) digits U-Net: the observed sample comes from its held-out data."""
    from sde_diffusion.apps import train

    tiny = ["train_data=digits", "model=unet_digits_small", "train.steps=2", "progress=false"]
    tiny += ["train.batch_size=16", "sample.steps=2", "sample.num_samples=4"]
    train.run(compose("train", tiny), tmp_path / "t")
    ckpt = next((tmp_path / "t" / "checkpoints").iterdir())
    metrics, out = _run(tmp_path, f"checkpoint={ckpt}", "operator=superres", "num_samples=4",
                        "steps=5")  # fmt: skip
    with np.load(out / "restore.npz") as f:
        assert f["x"].shape == (4, 1, 8, 8) and f["y"].shape == (1, 4, 4)
        assert f["x_true"].shape == (1, 8, 8) and "posterior_mean" not in f.files
    assert metrics["nfe"] == 5 and (out / "restore.png").stat().st_size > 10_000
