"""Encode a data set once: the latents are cached on disk, keyed by the autoencoder's and the
data's sha256 digests.

The cache folder is :func:`sde_diffusion.cache_root.cache_dir` ``("latents")``;
a file there holds plain tensors and strings, is written atomically and is read with
``weights_only=True``. A cache file that is unreadable or does not match is encoded again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from .. import cache_root
from ..atomic import atomic_open
from ..digest import tensor_sha256
from .codec import LatentCodec

__all__ = ["cache_dir", "encode_cached", "tensor_sha256"]

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """``$SDE_DIFFUSION_CACHE/latents``, else ``$XDG_CACHE_HOME/sde-diffusion/latents``,
    else ``~/.cache/sde-diffusion/latents``."""
    return cache_root.cache_dir("latents")


def encode_cached(codec: LatentCodec, data: Tensor, folder: str | Path | None = None) -> Tensor:
    """``codec.encode(data)`` in float32 on the CPU, read from the cache when it holds it.

    Only an autoencoder loaded from a file (``codec.sha256`` set) is cached; the key is
    sha256(autoencoder file) and sha256(data)."""
    if codec.sha256 is None:
        return codec.encode(data.cpu().float())
    data_digest = tensor_sha256(data)
    folder = cache_dir() if folder is None else Path(folder)
    path = folder / f"{codec.sha256[:20]}-{data_digest[:20]}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            ok = (blob["autoencoder_sha256"], blob["data_sha256"]) == (codec.sha256, data_digest)
            z = blob["latents"]
            if ok and tuple(z.shape) == (len(data), *codec.latent_shape):
                log.info("latents read from the cache %s", path)
                return z
        except Exception as err:  # any unreadable cache file is encoded again
            log.warning("latent cache %s is unreadable (%s): encoding again", path, err)
    z = codec.encode(data.cpu().float()).float().contiguous()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as f:
            torch.save({"latents": z, "autoencoder_sha256": codec.sha256,
                        "data_sha256": data_digest}, f)  # fmt: skip
        log.info("encoded %d images; latents cached in %s", len(data), path)
    except OSError as err:  # a read-only home: train on, uncached
        log.warning("could not cache the latents in %s (%s)", folder, err)
    return z
