"""A small convolutional autoencoder for latent diffusion: the LDM "KL-f" family, or plain.

The encoder maps an image x (C, H, W) to a latent z (c, H/f, W/f), f = 2^(len(ch_mult) - 1);
the decoder maps z back. With ``kl=True`` the encoder gives a diagonal Gaussian posterior
q(z|x) = N(mu(x), diag sigma^2(x)), trained with a small KL term towards N(0, I) that keeps
the latent space smooth and bounded (Rombach et al., 2022, "High-Resolution Image Synthesis
with Latent Diffusion Models", Sec. 3 and App. G, "KL-reg."); with ``kl=False`` it is a plain
deterministic autoencoder. Score models are trained on the posterior means, scaled to unit
variance per channel (:mod:`sde_diffusion.latent.scale`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .unet import _ints, _norm

__all__ = ["Autoencoder", "AutoencoderLoss", "kl_to_standard_normal"]

LOGVAR_RANGE = (-30.0, 20.0)  #: log sigma^2 is clamped here, as in LDM's posterior


class _Res(nn.Module):
    """(skip(x) + conv(SiLU(GN(conv(SiLU(GN(x))))))) / sqrt(2): a residual block without time."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1),
            _norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
        )  # fmt: skip
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return (self.skip(x) + self.body(x)) / math.sqrt(2)


class Autoencoder(nn.Module):
    """E: (B, C, H, W) -> (B, c, H/f, W/f) and D back; a KL-regularised latent or a plain one.

    Args:
        in_channels: image channels C.
        resolution: image size H = W (None: any size divisible by f); checked on every call.
        ch: base width; level i has ch * ch_mult[i] channels.
        ch_mult: one entry per level; the resolution halves between levels (f = 2^(levels-1),
            so ``[1, 2]`` gives f = 2 and ``[1, 2, 2]`` gives f = 4).
        num_res_blocks: residual blocks per level, in the encoder and in the decoder.
        latent_channels: c, the channels of the latent.
        kl: a diagonal Gaussian posterior (the encoder outputs mu and log sigma^2) with a KL
            term in :class:`AutoencoderLoss`; False: a deterministic latent z = mu(x).
    """

    def __init__(
        self,
        in_channels: int = 1,
        resolution: int | None = None,
        ch: int = 16,
        ch_mult: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        latent_channels: int = 2,
        kl: bool = True,
    ) -> None:
        super().__init__()
        for name, value in [("in_channels", in_channels), ("ch", ch),
                            ("num_res_blocks", num_res_blocks), ("latent_channels", latent_channels)]:  # fmt: skip
            _ints(name, [value], 1)
        mult = _ints("ch_mult", ch_mult, 1)
        if not mult:
            raise ValueError("ch_mult must hold at least one level")
        self.factor = 2 ** (len(mult) - 1)
        if resolution is not None:
            _ints("resolution", [resolution], 1)
            if resolution % self.factor:
                raise ValueError(
                    f"resolution={resolution} is not divisible by the downsampling factor "
                    f"{self.factor} of ch_mult={list(mult)}"
                )
        self.in_channels, self.resolution, self.kl = in_channels, resolution, bool(kl)
        self.latent_channels = latent_channels
        widths = [ch * m for m in mult]
        enc: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        c = widths[0]
        for i, w in enumerate(widths):
            for _ in range(num_res_blocks):
                enc.append(_Res(c, w))
                c = w
            if i < len(widths) - 1:
                enc.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        out = 2 * latent_channels if kl else latent_channels
        enc += [_norm(c), nn.SiLU(), nn.Conv2d(c, out, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, widths[-1], 3, padding=1)]
        c = widths[-1]
        for i in reversed(range(len(widths))):
            for _ in range(num_res_blocks):
                dec.append(_Res(c, widths[i]))
                c = widths[i]
            if i > 0:
                dec += [nn.Upsample(scale_factor=2), nn.Conv2d(c, c, 3, padding=1)]
        dec += [_norm(c), nn.SiLU(), nn.Conv2d(c, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def latent_shape(self, data_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(c, H/f, W/f) for images of shape (C, H, W); a shape that does not fit is refused."""
        self._check(tuple(data_shape), "images")
        _, h, w = data_shape
        return (self.latent_channels, h // self.factor, w // self.factor)

    def _check(self, shape: tuple[int, ...], what: str) -> None:
        c, f, r = self.in_channels, self.factor, self.resolution
        ok = len(shape) == 3 and shape[0] == c and shape[1] % f == 0 and shape[2] % f == 0
        if ok and r is not None:
            ok = shape[1] == shape[2] == r
        if not ok:
            size = f"{r}x{r}" if r is not None else f"H x W divisible by {f}"
            raise ValueError(
                f"Autoencoder(in_channels={c}, resolution={r}) takes {what} of shape "
                f"({c}, {size}), got {shape}"
            )

    def encode_stats(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(mu, log sigma^2) of q(z|x); log sigma^2 is None for the deterministic latent."""
        if x.ndim != 4:
            raise ValueError(f"Autoencoder expects images (B, C, H, W), got {tuple(x.shape)}")
        self._check(tuple(x.shape[1:]), "images")
        h = self.encoder(x)
        if not self.kl:
            return h, None
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean mu(x) (the mode): the latent that score models are trained on."""
        return self.encode_stats(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        """D(z): (B, c, h, w) -> (B, C, f h, f w)."""
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"Autoencoder.decode expects latents (B, {self.latent_channels}, h, w), "
                f"got {tuple(z.shape)}"
            )
        return self.decoder(z)

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(D(z), mu, log sigma^2) with z = mu + sigma * n, n ~ N(0, I) from ``generator``
        (the reparametrisation of Kingma & Welling, 2014, Eq. 10); z = mu without a posterior."""
        mean, logvar = self.encode_stats(x)
        if logvar is None:
            return self.decode(mean), mean, None
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.decode(mean + torch.exp(0.5 * logvar) * noise), mean, logvar


def kl_to_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum (mu^2 + sigma^2 - 1 - log sigma^2), per row."""
    kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(1)


class AutoencoderLoss:
    """L = mean_pixels l(x, D(z)) + beta KL(q(z|x) || N(0, I)) / D + lambda |phi(D(z)) - phi(x)|^2.

    ``l`` is |.| (L1) or (.)^2 (L2); D = C H W, so beta weighs the KL per pixel as LDM's
    kl_weight does against its summed reconstruction loss (Rombach et al., 2022, App. G;
    beta = 1e-6 there). ``phi`` is the digits feature network (:mod:`sde_diffusion.metrics`),
    a perceptual term for 1x8x8 digits in the spirit of LDM's LPIPS term (``lambda = 0``: off).
    Called as ``loss(model, x0, generator=g)`` like the score losses, so the same
    :class:`~sde_diffusion.training.Trainer` trains it.
    """

    def __init__(
        self, reconstruction: str = "l1", kl_weight: float = 1e-4, perceptual_weight: float = 0.0
    ) -> None:
        if reconstruction not in ("l1", "l2"):
            raise ValueError(f"reconstruction must be 'l1' or 'l2', got {reconstruction!r}")
        for name, v in (("kl_weight", kl_weight), ("perceptual_weight", perceptual_weight)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not (0 <= v < math.inf):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        self.reconstruction = reconstruction
        self.kl_weight, self.perceptual_weight = float(kl_weight), float(perceptual_weight)
        self._features: nn.Module | None = None

    def _phi(self, x: Tensor) -> Tensor:
        """Digits features of x, differentiable in x (no range check: decoded images overshoot)."""
        if tuple(x.shape[1:]) != (1, 8, 8):
            raise ValueError(
                f"the perceptual term uses the digits feature network: images of shape "
                f"(1, 8, 8), got {tuple(x.shape[1:])}; set perceptual_weight=0"
            )
        if self._features is None:
            from ..metrics import digits_features

            self._features = digits_features()[0]
        net = self._features.to(device=x.device, dtype=x.dtype)
        return net.body(x) * net.feature_scale

    def __call__(
        self, model: nn.Module, x0: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        recon, mean, logvar = model(x0, generator=generator)
        diff = recon - x0
        loss = (diff.abs() if self.reconstruction == "l1" else diff.square()).mean()
        if logvar is not None and self.kl_weight > 0:
            loss = (
                loss + self.kl_weight * kl_to_standard_normal(mean, logvar).mean() / x0[0].numel()
            )
        if self.perceptual_weight > 0:
            loss = loss + self.perceptual_weight * F.mse_loss(self._phi(recon), self._phi(x0))
        return loss

    def __repr__(self) -> str:
        return (
            f"AutoencoderLoss(reconstruction={self.reconstruction!r}, "
            f"kl_weight={self.kl_weight}, perceptual_weight={self.perceptual_weight})"
        )
