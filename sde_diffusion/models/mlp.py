"""A residual MLP for low-dimensional data, conditioned on a noise embedding."""

from __future__ import annotations

from torch import Tensor, nn

from .embedding import check_condition, label_embedding, no_labels, noise_embedding


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class _Block(nn.Module):
    """h + W2 SiLU(W1 LayerNorm(h) + E temb): a pre-norm residual block with additive conditioning."""

    def __init__(self, hidden: int, temb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.lin1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(temb_dim, hidden)
        self.lin2 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        return h + self.lin2(self.act(self.lin1(self.norm(h)) + self.emb(temb)))


class MLP(nn.Module):
    """F(x, c, y): (B, dim) -> (B, dim), a residual MLP with the noise embedding (plus, for a
    class-conditional network, a learned label embedding) added in each block.

    The network knows nothing about noise: ``c`` is whatever conditioning the parametrisation
    wrapper (:class:`sde_diffusion.parametrisation.ScoreModel`) passes, c_noise = log(sigma/alpha)/4.

    Args:
        dim: data dimension D.
        hidden: width of the hidden layers.
        depth: number of residual blocks.
        embedding: "fourier" (Gaussian Fourier features) or "sinusoidal".
        embed_dim: size of the embedding of c (even).
        fourier_scale: standard deviation of the Fourier frequencies.
        num_classes: None (unconditional: no label input, the weights of earlier versions), or
            the number of classes; labels 0 .. num_classes - 1, and num_classes (or
            ``y=None``) the null label (:class:`~sde_diffusion.models.embedding.LabelEmbedding`).
        out_dim: output size (default ``dim``); e.g. the number of classes for a classifier.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 3,
        embedding: str = "fourier",
        embed_dim: int = 128,
        fourier_scale: float = 16.0,
        num_classes: int | None = None,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.dim = _positive_int("dim", dim)
        self.out_dim = self.dim if out_dim is None else _positive_int("out_dim", out_dim)
        _positive_int("hidden", hidden)
        _positive_int("depth", depth)
        self.embed = noise_embedding(embedding, embed_dim, hidden, fourier_scale)
        self.inp = nn.Linear(self.dim, hidden)
        self.blocks = nn.ModuleList(_Block(hidden, hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, self.out_dim))
        self.num_classes = num_classes
        self.label_embed = label_embedding(num_classes, hidden)  # last: other weights unchanged

    def forward(self, x: Tensor, c: Tensor, y: Tensor | None = None) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"MLP(dim={self.dim}) expects x of shape (B, {self.dim}), got {tuple(x.shape)}"
            )
        temb = self.embed(check_condition(c, x.shape[0]).to(x.dtype))
        if self.label_embed is None:
            no_labels(y)
        else:
            temb = temb + self.label_embed(y, x.shape[0]).to(temb.dtype)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h)
