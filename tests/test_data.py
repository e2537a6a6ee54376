"""Training data: toy sets, mixtures, bundled digits, image folders, torchvision, scaling."""

from __future__ import annotations

import importlib.util
import math
import socket

import pytest
import torch

from sde_diffusion.bits_per_dim import DataScaling
from sde_diffusion.data import (
    DigitsDataset,
    ImageFolderDataset,
    ImageScaler,
    TorchvisionDataset,
    ToyDataset,
    checkerboard,
    moons,
    rings,
    swiss_roll,
)
from sde_diffusion.data.toy import NAMES
from sde_diffusion.datasets import eight_gaussians

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


# ---------------------------------------------------------------- toy
@pytest.mark.parametrize("fn", [swiss_roll, moons, rings, checkerboard])
def test_toy_samplers_shape_dtype_and_seeding(fn):
    a = fn(5000, torch.Generator().manual_seed(0))
    assert a.shape == (5000, 2) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, fn(5000, torch.Generator().manual_seed(0)))
    assert not torch.equal(a, fn(5000, torch.Generator().manual_seed(1)))
    assert a.abs().max() < 6  # every set is scaled to about [-4, 4]^2
    assert fn(3, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="n must be"):
        fn(0)


def test_toy_geometry():
    g = torch.Generator().manual_seed(0)
    x = checkerboard(20_000, g)
    cell = torch.floor(x / 2).long()
    assert x.abs().max() <= 4 and ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()  # dark squares only
    r = rings(20_000, g, noise=0.0).norm(dim=1)
    for radius in (0.9, 1.8, 2.7, 3.6):
        assert ((r - radius).abs() < 1e-6).any()
    assert ((r[:, None] - torch.tensor([0.9, 1.8, 2.7, 3.6])).abs().min(dim=1).values < 1e-5).all()


@pytest.mark.parametrize("name", NAMES)
def test_toy_dataset_all_names(name):
    ds = ToyDataset(name, n=1000, seed=3)
    assert len(ds) == 1000 and ds.data.shape == (1000, *ds.shape) and ds[0].shape == ds.shape
    assert torch.equal(ds.data, ToyDataset(name, n=1000, seed=3).data)
    assert ds.scaler is None


def test_toy_dataset_mixture_keeps_exact_model():
    ds = ToyDataset("eight_gaussians", n=50_000, dtype=torch.float64)
    assert ds.mixture is not None
    se = ds.data.std(0) / math.sqrt(len(ds))
    assert ((ds.data.mean(0) - ds.mixture.mean()).abs() < 4 * se).all()
    assert ToyDataset("moons", n=10).mixture is None
    other = ToyDataset.from_mixture(eight_gaussians(radius=1.0), n=10)
    assert len(other) == 10 and other.data.norm(dim=1).max() < 2.5
    with pytest.raises(ValueError, match="unknown toy data set 'spiral'; choose one of"):
        ToyDataset("spiral")


# ---------------------------------------------------------------- scaling
def test_image_scaler_round_trip_and_bits_per_dim_scaling():
    scaler = ImageScaler(low=-1.0, high=1.0, max_value=255.0)
    v = torch.arange(256, dtype=torch.uint8)
    x = scaler(v)
    assert x.dtype == torch.get_default_dtype()
    assert float(x[0]) == -1.0 and float(x[-1]) == 1.0
    torch.testing.assert_close(scaler.inverse(x), v.float(), rtol=0, atol=1e-4)
    assert torch.equal(scaler.to_pixels(x + 1e-3), v.float())
    assert float(scaler.to_pixels(torch.tensor([-3.0, 3.0]))[1]) == 255.0  # clamped
    assert isinstance(scaler.scaling, DataScaling)
    assert scaler.scaling.log_abs_det(3) == pytest.approx(3 * math.log(2 / 255))
    torch.testing.assert_close(scaler.to_unit(x), v.float() / 255)
    for kw in (dict(low=1.0, high=1.0), dict(max_value=0.0), dict(low=float("nan"))):
        with pytest.raises(ValueError):
            ImageScaler(**kw)


# ---------------------------------------------------------------- digits
def test_digits_bundled_deterministic_split_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the bundled digits must load without network access")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    train, test = DigitsDataset("train"), DigitsDataset("test")
    assert len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    assert train.shape == (1, 8, 8) and train[0].shape == (1, 8, 8)
    assert torch.equal(test.pixels, DigitsDataset("test").pixels)  # deterministic split
    assert sorted(train.indices.tolist() + test.indices.tolist()) == list(range(1797))
    assert train.pixels.min() == 0 and train.pixels.max() == 16
    x = train.data
    assert x.min() == -1 and x.max() == 1 and x.dtype == torch.float32
    torch.testing.assert_close(train.scaler.inverse(x), train.pixels.float())
    assert set(train.labels.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="split must be one of"):
        DigitsDataset("validation")


# ---------------------------------------------------------------- image folders
def _write_images(folder, pil):
    folder.mkdir(parents=True, exist_ok=True)
    pil.new("RGB", (12, 10), (255, 0, 0)).save(folder / "red.png")
    pil.new("L", (9, 9), 0).save(folder / "black.jpg")
    (folder / "sub").mkdir()
    pil.new("RGB", (20, 30), (0, 0, 255)).save(folder / "sub" / "blue.bmp")
    (folder / "notes.txt").write_text("not an image")


def test_image_folder_loads_and_scales(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    _write_images(tmp_path / "imgs", pil)
    ds = ImageFolderDataset(tmp_path / "imgs", resolution=8, channels=3)
    assert len(ds) == 3 and ds.shape == (3, 8, 8)
    names = [p.name for p in ds.files]
    red = ds[names.index("red.png")]
    torch.testing.assert_close(red.mean(dim=(1, 2)), torch.tensor([1.0, -1.0, -1.0]))
    grey = ImageFolderDataset(tmp_path / "imgs", resolution=4, channels=1)
    assert grey.shape == (1, 4, 4) and grey.data.min() >= -1 and grey.data.max() <= 1


def test_image_folder_errors(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    with pytest.raises(ValueError, match="does not exist"):
        ImageFolderDataset(tmp_path / "missing", resolution=8)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no images"):
        ImageFolderDataset(tmp_path / "empty", resolution=8)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        ImageFolderDataset(tmp_path / "bad", resolution=8)
    _write_images(tmp_path / "ok", pil)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        ImageFolderDataset(tmp_path / "ok", resolution=8, channels=2)


# ---------------------------------------------------------------- torchvision
def test_torchvision_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="name must be one of"):
        TorchvisionDataset("imagenet", tmp_path)
    if HAS_TORCHVISION:
        with pytest.raises(ValueError, match="download=True"):
            TorchvisionDataset("mnist", tmp_path / "nothing", download=False)
    else:
        with pytest.raises(ImportError, match="pip install torchvision"):
            TorchvisionDataset("cifar10", tmp_path)
