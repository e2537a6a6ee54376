"""Labels for the apps: the training labels of a class-conditional model, read from the data
set and checked against ``model.num_classes`` before any step is run."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..guidance.labels import check_p_uncond
from ._common import UsageError


def dataset_labels(dataset: Any, n: int) -> Tensor | None:
    """The data set's ``(n,)`` integer labels (``dataset.labels``), or None if it has none."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or tuple(labels.shape) != (n,):
        raise UsageError(f"train_data: its labels must be {n} integers, got {tuple(labels.shape)}")
    return labels.long()


def training_labels(
    dataset: Any, num_classes: Any, n: int, p_uncond: Any
) -> tuple[Tensor | None, float]:
    """(labels, p_uncond) for ``sde-train``: None and 0 for an unconditional model (the data's
    labels, if any, are not used); for ``model.num_classes=K`` the data's labels, which must
    lie in 0 .. K - 1."""
    try:
        p = check_p_uncond(p_uncond)
    except ValueError as err:
        raise UsageError(f"train.{err}") from err
    if num_classes is None:
        if p > 0:
            raise UsageError(
                f"train.p_uncond={p_uncond} drops labels, but the model is unconditional: "
                "set model.num_classes"
            )
        return None, 0.0
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UsageError(f"model.num_classes must be an integer >= 1 or null, got {num_classes!r}")
    labels = dataset_labels(dataset, n)
    if labels is None:
        raise UsageError(
            f"model.num_classes={num_classes} needs labelled data, but train_data has no labels "
            "(labelled: digits, the Gaussian-mixture presets and train_data=gaussian_mixture, "
            "an .npz with a 'labels' array)"
        )
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise UsageError(
            f"train_data has labels {lo} .. {hi}, outside model.num_classes={num_classes} "
            f"(classes 0 .. {num_classes - 1}): set model.num_classes={hi + 1}"
        )
    return labels, p
