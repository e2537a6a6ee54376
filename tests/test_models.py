"""Score networks (MLP, U-Net) and the parametrisation wrapper ScoreModel.

The wrapper is checked against an oracle network whose output is the exact optimum for
each parametrisation, built from a Gaussian mixture's exact score: the wrapper must then
return the exact score and Tweedie's denoiser, for every SDE.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from sde_diffusion.datasets import unequal_mixture
from sde_diffusion.models import MLP, GaussianFourierProjection, SinusoidalEmbedding, UNet
from sde_diffusion.parametrisation import PARAMETRISATIONS, ScoreModel
from sde_diffusion.reverse import tweedie_denoise

from .conftest import SDE_CONFIGS, make_sde


def small_unet(**kw) -> UNet:
    args = dict(in_channels=1, resolution=8, ch=16, ch_mult=(1, 2), num_res_blocks=1)
    args.update(attn_resolutions=(4,), dropout=0.0)
    args.update(kw)
    return UNet(**args)


# ---------------------------------------------------------------- embeddings
def test_embeddings_shapes_and_buffers():
    c = torch.linspace(-2, 2, 5)
    four = GaussianFourierProjection(16, scale=4.0)
    assert four(c).shape == (5, 16)
    assert "W" in four.state_dict() and not list(four.parameters())  # saved, never trained
    sin = SinusoidalEmbedding(8)
    out = sin(torch.zeros(3))
    assert torch.equal(out, torch.cat([torch.ones(3, 4), torch.zeros(3, 4)], dim=1))
    with pytest.raises(ValueError, match="embed_dim"):
        GaussianFourierProjection(7)


# ---------------------------------------------------------------- MLP
@pytest.mark.parametrize("embedding", ["fourier", "sinusoidal"])
def test_mlp_shape_and_time_conditioning(embedding):
    torch.manual_seed(0)
    net = MLP(3, hidden=32, depth=2, embedding=embedding, embed_dim=16)
    x = torch.randn(6, 3)
    out = net(x, torch.full((6,), -1.0))
    assert out.shape == x.shape
    # the same x at another noise level must give another output (the embedding reaches F)
    assert (out - net(x, torch.full((6,), 1.0))).abs().max() > 1e-3
    # a scalar c is broadcast over the batch
    assert torch.allclose(net(x, torch.tensor(-1.0)), out)


def test_mlp_refuses_bad_input():
    net = MLP(2, hidden=8, depth=1, embed_dim=8)
    with pytest.raises(ValueError, match=r"expects x of shape \(B, 2\)"):
        net(torch.randn(4, 1, 8, 8), torch.zeros(4))
    with pytest.raises(ValueError, match="c must be"):
        net(torch.randn(4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="embedding must be one of"):
        MLP(2, embedding="learned")
    with pytest.raises(ValueError, match="depth"):
        MLP(2, depth=0)


# ---------------------------------------------------------------- U-Net
@pytest.mark.parametrize(
    "kw, shape",
    [
        ({}, (3, 1, 8, 8)),
        (
            dict(in_channels=3, resolution=16, ch_mult=(1, 2, 2), attn_resolutions=(8, 4)),
            (2, 3, 16, 16),
        ),
        (dict(embedding="sinusoidal", embed_dim=32, num_res_blocks=2), (2, 1, 8, 8)),
    ],
)
def test_unet_shape_time_conditioning_and_gradients(kw, shape):
    torch.manual_seed(0)
    net = small_unet(**kw)
    x = torch.randn(shape)
    out = net(x, torch.full((shape[0],), -1.0))
    assert out.shape == x.shape
    assert (out - net(x, torch.full((shape[0],), 1.0))).abs().max() > 1e-3
    # every parameter takes part: no block is built but left out of the forward pass
    net(x, torch.zeros(shape[0])).square().sum().backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert not unused, unused


def test_unet_refuses_points_wrong_channels_and_sizes():
    net = small_unet()
    with pytest.raises(ValueError, match="use the MLP for low-dimensional data"):
        net(torch.randn(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="in_channels=1.*3 channels"):
        net(torch.randn(4, 3, 8, 8), torch.zeros(4))
    with pytest.raises(ValueError, match="expects 8x8"):
        net(torch.randn(4, 1, 16, 16), torch.zeros(4))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(resolution=10, ch_mult=(1, 2, 2)), "divisible by 2\\^\\(len\\(ch_mult\\) - 1\\) = 4"),
        (dict(attn_resolutions=(16,)), "attn_resolutions must be among"),
        (dict(dropout=1.0), "dropout"),
        (dict(ch_mult=()), "ch_mult"),
        (dict(in_channels=0), "in_channels"),
        (dict(embedding="nope"), "embedding must be one of"),
    ],
)
def test_unet_refuses_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        small_unet(**kw)


# ---------------------------------------------------------------- ScoreModel
class Oracle(nn.Module):
    """The optimal F for a parametrisation: it recovers (x, t) from (c_in x, c_noise) and
    answers with the exact mixture score, so ScoreModel's algebra is all that is tested."""

    def __init__(self, mixture, sde, parametrisation, sigma_data):
        super().__init__()
        self.mixture, self.sde, self.p, self.sd = mixture, sde, parametrisation, sigma_data

    def time_of(self, c_noise):
        target = 4 * c_noise  # log(sigma / alpha), increasing in t: invert by bisection
        lo, hi = torch.zeros_like(c_noise), torch.full_like(c_noise, self.sde.T)
        for _ in range(200):
            mid = (lo + hi) / 2
            alpha, sigma = self.sde.marginal(mid)
            up = (sigma / alpha).log() < target
            lo, hi = torch.where(up, mid, lo), torch.where(up, hi, mid)
        return (lo + hi) / 2

    def forward(self, x_in, c_noise):
        t = self.time_of(c_noise)
        alpha, sigma = (v[:, None] for v in self.sde.marginal(t))
        x = x_in * (sigma**2 + (alpha * self.sd) ** 2).sqrt()
        s = self.mixture.score(x, t, self.sde)
        if self.p == "score":
            return sigma * s
        if self.p == "eps":
            return -sigma * s
        se, sd2 = sigma / alpha, self.sd**2
        denoised = (x + sigma**2 * s) / alpha
        c_skip, c_out = sd2 / (se**2 + sd2), se * self.sd / (se**2 + sd2).sqrt()
        return (denoised - c_skip * x / alpha) / c_out


@pytest.mark.parametrize("sde_name", SDE_CONFIGS)
@pytest.mark.parametrize("parametrisation", PARAMETRISATIONS)
def test_score_model_reproduces_exact_score_and_tweedie(sde_name, parametrisation):
    sde = make_sde(sde_name)
    mixture = unequal_mixture(dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    t = 1e-3 + (1 - 1e-3) * torch.rand(512, generator=g, dtype=torch.float64)
    alpha, sigma = sde.marginal(t)
    x = alpha[:, None] * mixture.sample(512, g) + sigma[:, None] * torch.randn(
        512, 2, generator=g, dtype=torch.float64
    )
    model = ScoreModel(
        Oracle(mixture, sde, parametrisation, 0.7), sde, parametrisation, sigma_data=0.7
    )
    exact = mixture.score(x, t, sde)
    # float64 algebra; the bisection recovers t to ~1e-16, so 1e-7 relative leaves room for
    # the EDM score's (alpha D - x) / sigma^2 cancellation at sigma ~ 0.01 (VP, t = 1e-3)
    torch.testing.assert_close(model(x, t), exact, rtol=1e-7, atol=1e-7 * exact.abs().max().item())
    denoised = tweedie_denoise(sde, mixture.score_fn(sde), x, t)
    torch.testing.assert_close(model.denoise(x, t), denoised, rtol=1e-7, atol=1e-7)


def test_score_model_with_real_networks_and_validation():
    sde = make_sde("vp")
    for net, x in [
        (MLP(2, 16, 1, embed_dim=8), torch.randn(5, 2)),
        (small_unet(), torch.randn(2, 1, 8, 8)),
    ]:
        for p in PARAMETRISATIONS:
            model = ScoreModel(net, sde, p)
            assert model(x, torch.full((x.shape[0],), 0.5)).shape == x.shape
            assert model.denoise(x, torch.tensor(0.5)).shape == x.shape  # scalar t broadcast
    with pytest.raises(
        ValueError, match=r"parametrisation must be one of \('score', 'eps', 'edm'\)"
    ):
        ScoreModel(MLP(2), sde, "v")
    with pytest.raises(ValueError, match="sigma_data"):
        ScoreModel(MLP(2), sde, "edm", sigma_data=0.0)
    with pytest.raises(ValueError, match="t must be a scalar or of shape"):
        ScoreModel(MLP(2), sde)(torch.randn(4, 2), torch.rand(3))


# ---------------------------------------------------------------- configs
CONF = Path(__file__).resolve().parents[1] / "conf"
MODEL_CONFIGS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_every_model_config_builds_and_runs(name):
    """Each conf/model/*.yaml names a network that maps data of its declared shape to itself."""
    net = instantiate(OmegaConf.load(CONF / "model" / f"{name}.yaml"))
    if isinstance(net, UNet):
        shape = (2, net.in_channels, net.resolution, net.resolution)
    else:
        shape = (2, net.dim)
    x = torch.randn(shape)
    assert net(x, torch.zeros(2)).shape == x.shape
