"""Inception-v3 pool features (2048-D), the features of FID/KID in the papers, via torch-fidelity.

The network is torch-fidelity's ``FeatureExtractorInceptionV3``: the TensorFlow FID Inception
(2015-12-05 graph) ported to PyTorch, TF-1.x-exact bilinear resize to 299 x 299 included, the
same module torchmetrics' FID uses. Weights come only from a local file the user names; nothing
is downloaded. The file is read with ``torch.load(weights_only=True)`` (after a CRC check of
its archive), must be a plain dict of tensors, and reaches torch-fidelity re-serialised from
those tensors, so no code from the file is ever unpickled (torch-fidelity alone would load it
with ``weights_only=False``).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from ..digest import file_sha256
from .features import weights_digest

__all__ = ["InceptionFeatures", "inception_features", "INCEPTION_URL"]

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
STANDARD_SHA256_PREFIX = "6726825d"  #: torch.hub convention: the file name carries it
FEATURE_DIM = 2048
RANGE_SLACK = 0.1  #: values in [-1.1, 1.1] are clamped to [-1, 1]; anything further is refused


def _fidelity():
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise ImportError(
            "Inception features need torch-fidelity: pip install 'sde-diffusion[fid]'"
        ) from err
    return FeatureExtractorInceptionV3


class InceptionFeatures(nn.Module):
    """Images ``(n, C, H, W)``, C = 1 or 3, in [-1, 1] -> Inception-v3 pool features ``(n, 2048)``.

    Images are quantised to 8-bit pixels, round((x + 1) 127.5), as the reference FID code sees
    real images; one channel is repeated to three; any size is resized to 299 inside.
    ``file_sha256`` is the weights file's digest; ``standard`` says whether it is the file at
    :data:`INCEPTION_URL` (its sha256 starts with 6726825d), the one published FIDs use.
    """

    def __init__(self, net: nn.Module, file_sha256: str = "") -> None:
        super().__init__()
        self.net = net
        self.file_sha256 = file_sha256
        self.standard = file_sha256.startswith(STANDARD_SHA256_PREFIX)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"Inception features need images of shape (n, 1 or 3, H, W), got {shape}"
            )
        if min(x.shape[2:]) < 2 or not x.is_floating_point() or not bool(torch.isfinite(x).all()):
            raise ValueError("Inception features need finite floating-point images, H, W >= 2")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
            raise ValueError(
                f"Inception features need images in [-1, 1] (scale pixels with the data set's "
                f"scaler, clamp samples), got values in [{lo:.3g}, {hi:.3g}]"
            )
        pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        return self.net(pixels)[0].to(torch.float32)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"record {bad!r} fails its CRC check")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ValueError("not a state dict (a mapping of names to tensors)")
    return state


def inception_features(weights_path: str | Path) -> tuple[InceptionFeatures, str]:
    """``(module, digest)``: Inception-v3 pool features from a local weights file.

    Args:
        weights_path: torch-fidelity's Inception weights (a ``.pth`` state dict), fetched once
            by hand from :data:`INCEPTION_URL`. Any state dict of the same architecture loads
            (the tests use random weights); ``module.standard`` tells the published one apart.

    The digest (:func:`~sde_diffusion.metrics.features.weights_digest`) names the extractor in
    :class:`~sde_diffusion.metrics.features.FeatureStatistics`.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise ValueError(
            f"Inception weights {str(path)!r}: no such file; download {INCEPTION_URL} once "
            f"(torch-fidelity's FID Inception) and pass its path"
        )
    cls = _fidelity()
    try:
        state = _read_state_dict(path)
        buffer = io.BytesIO()
        torch.save({k: v.clone() for k, v in state.items()}, buffer)
        buffer.seek(0)
        net = cls("inception-v3-compat", ["2048"], feature_extractor_weights_path=buffer)
    except Exception as err:
        raise ValueError(
            f"Inception weights {str(path)!r} are corrupt or not torch-fidelity's Inception-v3 "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    module = InceptionFeatures(net, file_sha256(path)).eval().requires_grad_(False)
    return module, weights_digest(module)
