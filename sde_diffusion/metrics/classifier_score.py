"""A classifier score: the class histogram of the samples against the data's, and the confidence.

With a classifier's logits on n samples, h_c is the fraction classified as class c and the
score is TV(h, h_data) = 1/2 sum_c |h_c - h_data,c| in [0, 1] (missing or extra classes show
here), beside the mean top-class probability (blurry or ambiguous samples show there); the
two halves of the Inception Score's intuition (Salimans et al., 2016, Sec. 4), kept apart and
readable. Its floor is the TV between the predicted histograms of two independent draws of
real data at the same n (``feature_floor`` on the data's logits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .features import _features_2d

__all__ = ["ClassifierScore", "class_histogram", "classifier_score"]


@dataclass(frozen=True)
class ClassifierScore:
    """``tv`` between the histograms; ``confidence``: mean max softmax; ``histogram`` of samples."""

    tv: float
    confidence: float
    histogram: tuple[float, ...]


def class_histogram(labels_or_logits: Tensor | np.ndarray, n_classes: int) -> np.ndarray:
    """Class frequencies ``(n_classes,)`` from integer labels ``(n,)`` or logits ``(n, C)``."""
    x = labels_or_logits
    x = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if x.ndim == 2:
        x = _features_2d(x, "logits").argmax(1)
    if x.ndim != 1 or x.shape[0] < 1 or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"need integer labels (n,) or logits (n, C), got shape {tuple(x.shape)}")
    if x.min() < 0 or x.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes - 1}], got [{x.min()}, {x.max()}]")
    return np.bincount(x, minlength=n_classes) / x.shape[0]


def classifier_score(
    logits: Tensor | np.ndarray, reference: Tensor | np.ndarray
) -> ClassifierScore:
    """Score samples by a classifier's ``logits`` ``(n, C)`` (e.g. ``net.logits(images)`` of
    :func:`~sde_diffusion.metrics.digits_features`) against ``reference``: the data's class
    frequencies ``(C,)`` (summing to 1), its labels ``(m,)`` or the classifier's logits on it
    ``(m, C)`` (which cancels the classifier's own errors, the default in the floor).

    TV = 1/2 sum_c |h_c - h_ref,c| in [0, 1]; confidence = mean_i max_c softmax(logits_i)_c.
    """
    z = torch.from_numpy(_features_2d(logits, "logits"))
    n_classes = z.shape[1]
    ref = (
        reference.detach().cpu().numpy() if isinstance(reference, Tensor) else np.asarray(reference)
    )
    if ref.ndim == 1 and np.issubdtype(ref.dtype, np.floating):
        if ref.shape[0] != n_classes or (ref < 0).any() or abs(ref.sum() - 1) > 1e-6:
            raise ValueError(f"reference frequencies must be {n_classes} values >= 0 summing to 1")
        ref_hist = ref.astype(np.float64)
    else:
        if ref.ndim == 2 and ref.shape[1] != n_classes:
            raise ValueError(
                f"reference logits have {ref.shape[1]} classes, the samples {n_classes}"
            )
        ref_hist = class_histogram(ref, n_classes)
    hist = class_histogram(z.numpy(), n_classes)
    confidence = float(torch.softmax(z, dim=1).amax(1).mean())
    return ClassifierScore(
        float(0.5 * np.abs(hist - ref_hist).sum()), confidence, tuple(float(h) for h in hist)
    )
