"""A noise-conditional classifier p_t(y | x) trained on noised data, for classifier guidance.

The network sees the same preconditioned input as the score model (c_in x_t, c_noise;
Karras et al., 2022, Table 1) and returns logits; it is trained by cross-entropy on
x_t = alpha x_0 + sigma z with t ~ U[eps, T] (Song et al., 2021, App. I.4; Dhariwal & Nichol,
2021, Sec. 4), whose minimiser is the Bayes classifier of the diffused marginals, the
:class:`~sde_diffusion.guidance.ExactClassifier` of a labelled mixture.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from .._utils import append_dims
from ..parametrisation import marginal_at, network_inputs
from ..training.checkpoint import CheckpointError, load_checkpoint, require
from ..training.rebuild import check_plain, rebuild
from ..training.trained import load_weights
from .labels import check_label


class NoiseClassifier(nn.Module):
    """Logits of p_t(y | x) from a network F(c_in x, c_noise) -> ``(B, num_classes)``.

    Args:
        net: e.g. ``MLP(dim, out_dim=num_classes)`` or
            :class:`~sde_diffusion.models.classifier.ImageClassifier`.
        sde: anything with ``marginal(t) -> (alpha, sigma)``.
        num_classes: the number of classes (the network's output size).
        sigma_data: the data's standard deviation, for c_in.

    :meth:`log_probs` and :meth:`log_prob_fn` match :class:`ExactClassifier`, so either can
    feed :func:`~sde_diffusion.guidance.classifier_guided_score`.
    """

    def __init__(self, net: nn.Module, sde: object, num_classes: int, sigma_data: float = 0.5):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if not (math.isfinite(sigma_data) and sigma_data > 0):
            raise ValueError(f"sigma_data must be finite and > 0, got {sigma_data!r}")
        self.net, self.sde = net, sde
        self.n_classes = num_classes
        self.sigma_data = float(sigma_data)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Logits ``(B, num_classes)`` in x's dtype; t scalar or ``(B,)``. The network runs in
        its own dtype, and moves to x's device on first use."""
        p = next(self.net.parameters())
        if p.device != x.device:
            self.to(x.device)
        xp = x.to(p.dtype)
        alpha, sigma, _ = marginal_at(self.sde, xp, torch.as_tensor(t, device=x.device))
        return self.net(*network_inputs(xp, alpha, sigma, self.sigma_data)).to(x.dtype)

    def log_probs(self, x: Tensor, t: Tensor | float) -> Tensor:
        """log p_t(c | x) for every class, ``(B, num_classes)``."""
        return torch.log_softmax(self(x, t), dim=1)

    def log_prob_fn(self, y: int) -> Callable[[Tensor, Tensor], Tensor]:
        """``(x, t) -> (B,)``: log p_t(y | x) for the label ``y``."""
        y = check_label(y, self.n_classes)
        return lambda x, t: self.log_probs(x, t)[:, y]


class ClassifierLoss:
    """Cross-entropy of a noise-conditional classifier on noised data, ``loss(model, x0,
    generator=None, labels=...)`` -> scalar: E_t E_z [-log p_theta(y | alpha x_0 + sigma z, t)]
    with t ~ U[eps, T] (Dhariwal & Nichol, 2021, Sec. 4)."""

    def __init__(self, sde: object, eps: float = 1e-5) -> None:
        self.T = float(sde.T)
        if not (math.isfinite(eps) and 0 < eps < self.T):
            raise ValueError(f"eps must lie in (0, T) = (0, {self.T}), got {eps!r}")
        self.sde, self.eps = sde, float(eps)

    def __call__(
        self,
        model: Callable[[Tensor, Tensor], Tensor],
        x0: Tensor,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
    ) -> Tensor:
        if labels is None:
            raise ValueError("a classifier is trained on labelled data: labels are required")
        B = x0.shape[0]
        t = self.eps + (self.T - self.eps) * torch.rand(
            B, generator=generator, device=x0.device, dtype=x0.dtype
        )
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        alpha, sigma, _ = marginal_at(self.sde, x0, t)
        xt = append_dims(alpha, x0.ndim) * x0 + append_dims(sigma, x0.ndim) * z
        return F.cross_entropy(model(xt, t), labels)

    def __repr__(self) -> str:
        return f"ClassifierLoss(eps={self.eps})"


def load_classifier(path: str | Path, ema: bool = True) -> NoiseClassifier:
    """The classifier a ``sde-train-classifier`` checkpoint holds, rebuilt from the allow-list
    of ``conf/classifier_net`` and ``conf/sde`` (never ``instantiate``), EMA weights by default."""
    path = Path(str(path))
    state = load_checkpoint(path)
    require(state, ("config", "step", "num_classes", "ema" if ema else "model"), path)
    try:
        cfg = yaml.safe_load(state["config"])
    except (yaml.YAMLError, AttributeError) as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: its config is not valid YAML") from err
    if not isinstance(cfg, dict) or "classifier_net" not in cfg or "sde" not in cfg:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a classifier checkpoint")
    check_plain(cfg, "config")
    model = NoiseClassifier(
        rebuild(cfg["classifier_net"], "classifier_net"),
        rebuild(cfg["sde"], "sde"),
        int(state["num_classes"]),
    )
    weights: Any = state["model"]
    if ema:
        weights = {k[7:]: v for k, v in state["ema"].items() if k.startswith("module.")}
    load_weights(model, weights, f"checkpoint {str(path)!r}: the weights")
    return model.eval().requires_grad_(False)


def classifier_tv(
    classifier: Any,
    reference: Any,
    mixture: Any,
    sde: Any,
    t: float,
    n: int = 4096,
    seed: int = 0,
) -> float:
    """E_{x ~ p_t} 1/2 sum_c |p_t(c | x) - q_t(c | x)|: the mean total variation between the
    class probabilities of two classifiers (e.g. a trained one and the
    :class:`ExactClassifier`) on n draws of the noised data p_t = ``mixture`` diffused to t."""
    gen = torch.Generator().manual_seed(seed)
    x = mixture.at(t, sde).sample(n, gen, dtype=torch.float64)
    tt = torch.full((n,), float(t), dtype=torch.float64)
    with torch.no_grad():
        p = classifier.log_probs(x.float(), tt.float()).double().exp()
        q = reference.log_probs(x, tt).exp()
    return float(0.5 * (p - q).abs().sum(1).mean())
