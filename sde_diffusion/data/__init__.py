"""Training data: 2-D toy sets, Gaussian mixtures, images, and their scaling."""

from .arrays import ArrayDataset, Standardiser
from .images import DigitsDataset, ImageFolderDataset, PixelDataset, TorchvisionDataset
from .scaling import ImageScaler
from .toy import ToyDataset, checkerboard, moons, rings, swiss_roll

__all__ = [
    "ArrayDataset",
    "DigitsDataset",
    "ImageFolderDataset",
    "ImageScaler",
    "PixelDataset",
    "Standardiser",
    "ToyDataset",
    "TorchvisionDataset",
    "checkerboard",
    "moons",
    "rings",
    "swiss_roll",
]
