"""An adapter that makes a diffusers ``AutoencoderKL`` (the Stable Diffusion VAE family) an
autoencoder of this package: ``encode`` gives the posterior mean, ``decode`` the image.

Needs the optional extra: ``pip install 'sde-diffusion[latent]'``. A VAE on disk is loaded with
``local_files_only=True`` (nothing is downloaded), wrapped, its latent scale measured on your
training images, and written as an autoencoder file (:func:`export_diffusers_autoencoder`) that
``sde-train latent=PATH`` then takes like one of ours. The diffusers ``scaling_factor`` is not
used: the per-channel scale is measured (:mod:`sde_diffusion.latent.scale`). Reference: Rombach
et al. (2022), "High-Resolution Image Synthesis with Latent Diffusion Models", Sec. 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["DiffusersAutoencoder", "export_diffusers_autoencoder"]

_CONFIG_KEYS = ("in_channels", "out_channels", "latent_channels", "block_out_channels",
                "layers_per_block", "norm_num_groups", "down_block_types", "up_block_types",
                "act_fn", "mid_block_add_attention", "use_quant_conv", "use_post_quant_conv")  # fmt: skip


def _autoencoder_kl() -> type:
    try:
        from diffusers import AutoencoderKL
    except ImportError as err:
        raise ImportError(
            "the diffusers adapter needs diffusers: pip install 'sde-diffusion[latent]'"
        ) from err
    return AutoencoderKL


class DiffusersAutoencoder(nn.Module):
    """A diffusers ``AutoencoderKL`` with ``encode``/``decode``/``latent_shape``/``forward`` as
    :class:`~sde_diffusion.models.autoencoder.Autoencoder` has them. The arguments are those of
    ``AutoencoderKL`` (random weights; load a state dict, or use :meth:`from_vae`);
    ``resolution`` (optional) fixes the image size. f = 2^(len(block_out_channels) - 1)."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int | None = None,
        latent_channels: int = 4,
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        norm_num_groups: int = 32,
        down_block_types: tuple[str, ...] | None = None,
        up_block_types: tuple[str, ...] | None = None,
        act_fn: str = "silu",
        mid_block_add_attention: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        resolution: int | None = None,
        _vae: Any = None,
    ) -> None:
        super().__init__()
        if _vae is None:
            n = len(block_out_channels)
            _vae = _autoencoder_kl()(
                in_channels=in_channels, out_channels=out_channels or in_channels,
                latent_channels=latent_channels, block_out_channels=tuple(block_out_channels),
                layers_per_block=layers_per_block, norm_num_groups=norm_num_groups,
                down_block_types=tuple(down_block_types or ["DownEncoderBlock2D"] * n),
                up_block_types=tuple(up_block_types or ["UpDecoderBlock2D"] * n), act_fn=act_fn,
                mid_block_add_attention=mid_block_add_attention, use_quant_conv=use_quant_conv,
                use_post_quant_conv=use_post_quant_conv,
            )  # fmt: skip
        self.vae = _vae
        cfg = _vae.config
        self.in_channels, self.latent_channels = int(cfg.in_channels), int(cfg.latent_channels)
        self.factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.resolution = resolution

    @classmethod
    def from_vae(cls, vae: nn.Module) -> DiffusersAutoencoder:
        """Wrap an ``AutoencoderKL`` you already hold (its weights are kept)."""
        return cls(_vae=vae)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, subfolder: str | None = None
    ) -> DiffusersAutoencoder:
        """An ``AutoencoderKL`` saved on disk (``save_pretrained``), never downloaded."""
        vae = _autoencoder_kl().from_pretrained(str(folder), subfolder=subfolder,
                                                local_files_only=True)  # fmt: skip
        return cls.from_vae(vae)

    def config_node(self) -> dict[str, Any]:
        """Plain config data naming this class: what an autoencoder file records."""
        cfg = self.vae.config
        node: dict[str, Any] = {"_target_": f"{__name__}.{type(self).__name__}"}
        for key in _CONFIG_KEYS:
            value = cfg[key]
            node[key] = list(value) if isinstance(value, tuple | list) else value
        node["resolution"] = self.resolution
        return node

    def latent_shape(self, data_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(c, H/f, W/f) for images (C, H, W); a shape that does not fit is refused."""
        c, f, r = self.in_channels, self.factor, self.resolution
        shape = tuple(data_shape)
        ok = len(shape) == 3 and shape[0] == c and shape[1] % f == 0 and shape[2] % f == 0
        if not ok or (r is not None and shape[1:] != (r, r)):
            raise ValueError(
                f"the AutoencoderKL takes images of shape ({c}, H, W) with H, W divisible by "
                f"{f}{f' and equal to {r}' if r else ''}, got {shape}"
            )
        return (self.latent_channels, shape[1] // f, shape[2] // f)

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean of the VAE's diagonal Gaussian."""
        self.latent_shape(tuple(x.shape[1:]))
        return self.vae.encode(x).latent_dist.mean

    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z).sample

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(D(z), mu, log sigma^2), z = mu + sigma n (for :class:`AutoencoderLoss`)."""
        self.latent_shape(tuple(x.shape[1:]))
        dist = self.vae.encode(x).latent_dist
        noise = torch.randn(dist.mean.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.decode(dist.mean + dist.std * noise), dist.mean, dist.logvar


def export_diffusers_autoencoder(
    vae: nn.Module | str | Path, images: Tensor, path: str | Path, batch_size: int = 64
) -> Any:
    """Measure the latent scale of ``vae`` (an ``AutoencoderKL`` or a folder holding one) on
    ``images`` (N, C, H, W) in the range the VAE expects, and write an autoencoder file at
    ``path`` for ``sde-train latent=PATH``. Returns the loaded :class:`LatentCodec`."""
    from ..latent import load_autoencoder, measure_latent_scale, save_autoencoder

    if isinstance(vae, str | Path):
        ae = DiffusersAutoencoder.from_pretrained(vae)
    else:
        ae = DiffusersAutoencoder.from_vae(vae)
    ae = ae.eval()
    shape = tuple(images.shape[1:])
    ae.latent_shape(shape)
    scale = measure_latent_scale(ae.encode, images, batch_size)
    save_autoencoder(path, ae, ae.config_node(), scale, shape)
    return load_autoencoder(path)
