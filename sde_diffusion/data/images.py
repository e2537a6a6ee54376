"""Image data sets: bundled 8x8 digits, MNIST / CIFAR-10 via torchvision, any image folder.

Each keeps integer pixels (N, C, H, W) and returns them scaled by one :class:`ImageScaler`
(default: [0, max_value] -> [-1, 1]); ``dataset.scaler.inverse`` undoes it.
"""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .scaling import ImageScaler

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLITS = ("train", "test")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


class PixelDataset(Dataset):
    """Integer pixels ``(N, C, H, W)`` served scaled: ``self[i] = scaler(pixels[i])``."""

    def __init__(self, pixels: Tensor, scaler: ImageScaler, labels: Tensor | None = None):
        if pixels.ndim != 4 or pixels.shape[0] < 1:
            raise ValueError(
                f"pixels must have shape (N, C, H, W), N >= 1, got {tuple(pixels.shape)}"
            )
        self.pixels, self.scaler, self.labels = pixels, scaler, labels

    @property
    def data(self) -> Tensor:
        """All images, scaled (float; materialises N * C * H * W floats)."""
        return self.scaler(self.pixels)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.pixels.shape[1:])

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.scaler(self.pixels[index])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, shape={self.shape})"


class DigitsDataset(PixelDataset):
    """scikit-learn's 1797 8x8 handwritten digits (UCI; Alpaydin & Kaynak, 1998), bundled.

    Pixels are integers 0..16, images ``(1, 8, 8)``. The split is a fixed permutation
    (``split_seed``) with the first ``test_fraction`` of it as the test set.
    """

    def __init__(
        self,
        split: str = "train",
        scaler: ImageScaler | None = None,
        test_fraction: float = 0.2,
        split_seed: int = 0,
    ) -> None:
        _check_split(split)
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
        with resources.files(__package__).joinpath("digits.npz").open("rb") as f:
            archive = np.load(f)
            images, labels = archive["images"], archive["labels"]
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(split_seed))
        n_test = round(test_fraction * len(images))
        idx = perm[:n_test] if split == "test" else perm[n_test:]
        idx = idx.sort().values
        pixels = torch.from_numpy(images)[idx]
        labels = torch.from_numpy(labels)[idx].long()
        super().__init__(pixels, scaler or ImageScaler(max_value=16.0), labels)
        self.indices = idx  #: positions in scikit-learn's order


def _resize(pixels: Tensor, resolution: int | None) -> Tensor:
    """Area/bilinear resize of uint8 images to resolution x resolution, rounded back to uint8."""
    if resolution is None or tuple(pixels.shape[2:]) == (resolution, resolution):
        return pixels
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be an integer >= 1, got {resolution!r}")
    out = F.interpolate(
        pixels.float(), size=(resolution, resolution), mode="bilinear", antialias=True
    )
    return out.round().clamp(0, 255).to(torch.uint8)


class TorchvisionDataset(PixelDataset):
    """MNIST (1x28x28) or CIFAR-10 (3x32x32) from a local ``root`` through torchvision.

    Downloads only with ``download=True``; ``resolution`` resizes (e.g. MNIST to 32).
    """

    NAMES = ("mnist", "cifar10")

    def __init__(
        self,
        name: str,
        root: str | Path,
        split: str = "train",
        download: bool = False,
        resolution: int | None = None,
        scaler: ImageScaler | None = None,
    ) -> None:
        if name not in self.NAMES:
            raise ValueError(f"name must be one of {self.NAMES}, got {name!r}")
        _check_split(split)
        try:
            tv = importlib.import_module("torchvision.datasets")
        except ImportError as err:
            raise ImportError(
                f"the {name} data set needs torchvision: pip install torchvision ({err})"
            ) from err
        cls = tv.MNIST if name == "mnist" else tv.CIFAR10
        try:
            ds = cls(str(root), train=split == "train", download=download)
        except RuntimeError as err:
            raise ValueError(
                f"no {name} data under root={str(root)!r} ({err}); pass download=True to fetch it"
            ) from err
        data = torch.as_tensor(np.asarray(ds.data))
        pixels = data[:, None] if name == "mnist" else data.permute(0, 3, 1, 2)
        labels = torch.as_tensor(np.asarray(ds.targets)).long()
        super().__init__(_resize(pixels.contiguous(), resolution), scaler or ImageScaler(), labels)


class ImageFolderDataset(PixelDataset):
    """Every image under ``root`` (recursively), centre-cropped to a square and resized.

    Args:
        root: a folder holding images (suffixes in :data:`IMAGE_SUFFIXES`).
        resolution: output size H = W.
        channels: 1 (greyscale) or 3 (RGB).
    """

    def __init__(
        self,
        root: str | Path,
        resolution: int,
        channels: int = 3,
        scaler: ImageScaler | None = None,
    ) -> None:
        from PIL import Image, UnidentifiedImageError

        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"root={str(root)!r} does not exist or is not a folder")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be an integer >= 1, got {resolution!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"root={str(root)!r} holds no images (suffixes {IMAGE_SUFFIXES})")
        images = []
        for path in files:
            try:
                with Image.open(path) as img:
                    img = img.convert("L" if channels == 1 else "RGB")
                    w, h = img.size
                    side = min(w, h)
                    box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
                    img = img.resize((resolution, resolution), Image.Resampling.BICUBIC, box=box)
                    images.append(
                        np.asarray(img, dtype=np.uint8).reshape(resolution, resolution, channels)
                    )
            except (UnidentifiedImageError, OSError) as err:
                raise ValueError(f"cannot read image {str(path)!r}: {err}") from err
        pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
        super().__init__(pixels, scaler or ImageScaler())
        self.files = files
