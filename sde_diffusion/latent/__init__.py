"""Latent diffusion: score models in the latent space of an autoencoder (Rombach et al., 2022).

- :class:`LatentScale`, :func:`measure_latent_scale`: per-channel unit variance of the latents;
- :class:`LatentCodec`: an autoencoder and its scale, images <-> unit-variance latents;
- :func:`load_autoencoder`, :func:`save_autoencoder`: autoencoder files, through the
  allow-list and checked by sha256; :func:`default_autoencoder_path`: the shipped digits one;
- :func:`encode_cached`: a data set encoded once, cached on disk.

The networks live in :mod:`sde_diffusion.models.autoencoder` (and the diffusers adapter in
:mod:`sde_diffusion.models.autoencoder_diffusers`).
"""

from .cache import cache_dir, encode_cached
from .codec import LatentCodec
from .file import default_autoencoder_path, file_sha256, load_autoencoder, save_autoencoder
from .scale import LatentScale, measure_latent_scale

__all__ = [
    "LatentCodec",
    "LatentScale",
    "cache_dir",
    "default_autoencoder_path",
    "encode_cached",
    "file_sha256",
    "load_autoencoder",
    "measure_latent_scale",
    "save_autoencoder",
]
