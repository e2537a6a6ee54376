"""Exact class-conditional oracles for a Gaussian mixture whose components carry labels.

With labels c_k, p(x | c) = sum_{k: c_k = c} w_k N_k(x) / W_c with W_c = sum_{k: c_k = c} w_k,
and the noise-conditional classifier is Bayes' rule on the diffused marginals,
p_t(c | x) = W_c p_t(x | c) / sum_c' W_c' p_t(x | c') = sum_{k in c} w_k N_{k,t}(x) / p_t(x).
The score of p_t(x | c) is exact under every SDE, so guided samplers can be graded exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..mixture import GaussianMixture


def component_labels(mixture: GaussianMixture, labels: object) -> Tensor:
    """The ``(K,)`` class of each component as integers, else a one-line error."""
    lab = torch.as_tensor(np.asarray(labels))
    if lab.shape != (mixture.n_components,):
        raise ValueError(
            f"labels must have shape (K,) = ({mixture.n_components},), got {tuple(lab.shape)}"
        )
    if lab.dtype.is_floating_point or lab.dtype == torch.bool or (lab < 0).any():
        raise ValueError("labels must be non-negative integers")
    return lab.long()


def class_conditional(mixture: GaussianMixture, labels: object, c: int) -> GaussianMixture:
    """p(x | y = c): the sub-mixture of the components labelled ``c``, weights renormalised."""
    lab = component_labels(mixture, labels)
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
        raise ValueError(f"label must be an integer, got {c!r}")
    keep = lab == int(c)
    if not keep.any():
        raise ValueError(
            f"no component has label {c} (labels present: {sorted(set(lab.tolist()))})"
        )
    w = mixture.weights[keep]
    kw = {"covs": mixture.covs[keep]} if mixture.kind == "full" else {"stds": mixture.stds[keep]}
    return GaussianMixture(w / w.sum(), mixture.means[keep], dtype=mixture.dtype, **kw)


class ExactClassifier:
    """The exact noise-conditional classifier p_t(c | x) of a labelled mixture under ``sde``.

    Args:
        mixture: the prior p(x).
        labels: ``(K,)`` integer label of each component; classes are 0 .. max(labels), each
            with at least one component.
        sde: the forward SDE (only its ``marginal`` is used).
    """

    def __init__(self, mixture: GaussianMixture, labels: object, sde: object) -> None:
        lab = component_labels(mixture, labels)
        self.n_classes = int(lab.max()) + 1
        self.mixture, self.labels, self.sde = mixture, lab, sde
        self.classes = [class_conditional(mixture, lab, c) for c in range(self.n_classes)]
        self.class_weights = torch.stack(
            [mixture.weights[lab == c].sum() for c in range(self.n_classes)]
        )

    def log_probs(self, x: Tensor, t: float | Tensor) -> Tensor:
        """log p_t(c | x) for every class, ``(B, n_classes)``: a log-softmax over classes."""
        logits = torch.stack([sub.marginal_log_prob(x, t, self.sde) for sub in self.classes], dim=1)
        logits = logits + self.class_weights.log().to(device=x.device, dtype=logits.dtype)
        return torch.log_softmax(logits, dim=1)

    def log_prob_fn(self, y: int | Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """``(x, t) -> (B,)``: log p_t(y | x) for a label ``y`` (int, or ``(B,)`` per sample)."""
        if isinstance(y, Tensor):
            if y.dtype.is_floating_point or y.ndim > 1:
                raise ValueError("y must be an integer label or a (B,) tensor of labels")
            bad = (y < 0) | (y >= self.n_classes)
        else:
            if isinstance(y, bool) or not isinstance(y, (int, np.integer)):
                raise ValueError(f"label must be an integer, got {y!r}")
            bad = not 0 <= int(y) < self.n_classes
        if bool(torch.as_tensor(bad).any()):
            raise ValueError(f"labels must lie in 0 .. {self.n_classes - 1}, got {y!r}")

        def log_prob(x: Tensor, t: Tensor) -> Tensor:
            lp = self.log_probs(x, t)
            idx = torch.as_tensor(y, device=x.device).expand(x.shape[0])
            return lp.gather(1, idx[:, None])[:, 0]

        return log_prob

    def __repr__(self) -> str:
        return f"ExactClassifier(n_classes={self.n_classes}, mixture={self.mixture!r})"
