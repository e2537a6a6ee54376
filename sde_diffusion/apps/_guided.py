"""``label=`` and ``guidance=`` for ``sde-sample``: the class-conditional or guided score, and
the exact law its samples are scored against where there is one.

- a class-conditional checkpoint: s(x, t | y = label), with classifier-free guidance
  s + w (s(x|y) - s(x)) (its null label gives s(x));
- a labelled mixture (``data=``, or a checkpoint trained on one): the exact class-conditional
  score (:func:`~sde_diffusion.guidance.class_conditional`) and, for guidance, the exact
  unconditional one; the samples are scored against p(x | y) and, in 1-D/2-D, against the
  tilted density p(x|y)^(1+w) p(x)^(-w) (:mod:`sde_diffusion.guidance.tilted`);
- ``classifier=PATH`` (an ``sde-train-classifier`` checkpoint): classifier guidance
  s(x) + (1 + w) grad log p_t(y | x), so that w = 0 aims at p(x | y) here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..guidance import cfg_score, class_conditional, classifier_guided_score
from ..guidance.labels import check_label
from ..mixture import GaussianMixture
from ._common import UsageError
from ._model import load_trained


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _interval(value: Any) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, str) or not hasattr(value, "__len__") or len(value) != 2:
        raise UsageError(f"guidance_interval must be [t_lo, t_hi], got {value!r}")
    lo, hi = (_number("guidance_interval", v) for v in value)
    if not lo < hi:
        raise UsageError(f"guidance_interval must have t_lo < t_hi, got {[lo, hi]}")
    return [lo, hi]


def _label(label: Any, num_classes: int, what: str) -> int:
    try:
        return check_label(label, num_classes)
    except ValueError as err:
        raise UsageError(f"{err} ({what})") from err


def _mixture_labels(mixture: GaussianMixture, labels: Any) -> list[int]:
    from ..guidance.exact import component_labels

    if labels is None:
        return list(range(mixture.n_components))
    try:
        return component_labels(mixture, list(labels)).tolist()
    except (TypeError, ValueError) as err:
        raise UsageError(f"component_labels: {err}") from err


def guided_score(
    cfg: Any, checkpoint: Any, sde: Any, data: Any, score: Callable
) -> tuple[Callable, Any, dict[str, Any]]:
    """(score, the law to score the samples against, what metrics.json records).

    Without ``label`` the inputs come back unchanged (and guidance options are refused)."""
    label, w = cfg.get("label"), cfg.get("guidance", 0.0)
    interval, clf = _interval(cfg.get("guidance_interval")), cfg.get("classifier")
    w = 0.0 if w is None else _number("guidance", w)
    if label is None:
        if w != 0 or interval is not None or clf is not None:
            raise UsageError("guidance, guidance_interval and classifier need label=K")
        return score, data, {}
    info: dict[str, Any] = {"guidance": w, "guidance_interval": interval}
    mixture = data if isinstance(data, GaussianMixture) else None
    labels = None
    if mixture is not None:
        stored = load_trained(checkpoint).config.get("train_data") if checkpoint else None
        given = cfg.get("component_labels") if stored is None else stored.get("labels")
        labels = _mixture_labels(mixture, given)
    if clf is not None:
        from ..guidance.classifier import load_classifier

        classifier = load_classifier(clf)
        label = _label(label, classifier.n_classes, f"classifier={clf}")
        log_prob = classifier.log_prob_fn(label)
        if interval is None:
            guided = classifier_guided_score(score, log_prob, 1.0 + w)
        else:  # s(x) + grad log p_t(y|x) outside the interval, as CFG keeps s(x|y) there
            cond = classifier_guided_score(score, log_prob, 1.0)
            guided = classifier_guided_score(cond, log_prob, w, interval)
        info["guidance_kind"] = "classifier"
    elif checkpoint is not None:
        trained = load_trained(checkpoint)
        if trained.num_classes is None:
            raise UsageError(
                f"label={label}: checkpoint={str(checkpoint)!r} is unconditional (trained without "
                "model.num_classes); train a conditional model, or use classifier=PATH"
            )
        label = _label(label, trained.num_classes, f"checkpoint={checkpoint}")
        guided = trained.score_fn(label)
        if w != 0 or interval is not None:
            guided = cfg_score(guided, trained.score_fn(), w, interval)
        info["guidance_kind"] = "classifier-free"
    elif mixture is not None:
        label = _label(label, max(labels) + 1, "the data's component_labels")
        cond = class_conditional(mixture, labels, label)
        guided = cond.score_fn(sde)
        if w != 0 or interval is not None:
            guided = cfg_score(guided, score, w, interval)
        info["guidance_kind"] = "classifier-free (exact scores)"
    else:
        raise UsageError("label= needs a class-conditional checkpoint or a Gaussian-mixture data=")
    info["label"] = label
    target = data
    if mixture is not None:
        try:
            target = class_conditional(mixture, labels, label)
        except ValueError as err:
            raise UsageError(f"label={label}: {err}") from err
        info["label_reference"] = "the exact p(x | y)"
    else:  # held-out data carries no labels here: the metrics compare with every class
        info["label_reference"] = "held-out data of all classes (not only this label)"
    return guided, target, info


def label_metrics(
    x: Any, data: Any, target: Any, info: dict[str, Any], sde: Any, eps: float, checkpoint: Any
) -> dict[str, float]:
    """What ``metrics.json`` adds for ``label=``: :func:`tilted_metrics` for mixtures and
    :func:`digits_label_metrics` for a checkpoint trained on the digits."""
    return {
        **tilted_metrics(x, data, target, info, sde, eps),
        **digits_label_metrics(x, checkpoint, info),
    }


def digits_label_metrics(x: Any, checkpoint: Any, info: dict[str, Any]) -> dict[str, float]:
    """For a checkpoint trained on the digits: the fraction of the samples that the bundled
    digits CNN (:func:`~sde_diffusion.metrics.digits_features`) classifies as the label
    (``label_accuracy``), beside the same for the held-out digits of that class
    (``label_accuracy_real``: the CNN's own accuracy there)."""
    if "label" not in info or checkpoint is None or tuple(x.shape[1:]) != (1, 8, 8):
        return {}
    node = load_trained(checkpoint).config.get("train_data") or {}
    if not str(node.get("_target_", "")).endswith("DigitsDataset"):
        return {}
    import torch

    from ..metrics import digits_features
    from ..training.rebuild import rebuild

    net, _ = digits_features()
    test = rebuild({**node, "split": "test"}, "train_data")
    k = info["label"]
    with torch.no_grad():
        acc = net.logits(x.clamp(-1, 1).float()).argmax(1) == k
        acc_real = net.logits(test.data[test.labels == k].float()).argmax(1) == k
    return {
        "label_accuracy": float(acc.float().mean()),
        "label_accuracy_real": float(acc_real.float().mean()),
    }


def tilted_metrics(
    x: Any, mixture: Any, target: Any, info: dict[str, Any], sde: Any, eps: float
) -> dict[str, float]:
    """TV of guided samples to the tilted density p(x|y)^(1+w) p(x)^(-w) at eps (1-D/2-D
    labelled mixtures, no guidance interval), with its floor."""
    if not isinstance(mixture, GaussianMixture) or mixture.dim > 2 or "label" not in info:
        return {}
    if info.get("guidance_interval") is not None or not isinstance(target, GaussianMixture):
        return {}
    if info["guidance"] < -1:  # p(x|y)^(1+w) p(x)^(-w) is no density below w = -1
        return {}
    from ..guidance.tilted import tilted_density

    q = tilted_density(target, mixture, info["guidance"], t=eps, sde=sde)
    tv = q.tv(x.cpu().double().reshape(len(x), -1))
    return {"tv_tilted": tv.tv, "tv_tilted_floor": tv.floor}
