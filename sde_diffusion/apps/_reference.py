"""What samples from a checkpoint are scored against: the data it was trained on.

A checkpoint records its training data's config. Rebuilt through the allow-list
(:mod:`sde_diffusion.training.rebuild`), it gives either

- an exact law (a Gaussian-mixture preset or a typed mixture: ``dataset.mixture``), scored as
  the analytic ``data=`` laws are (TV in 1-D/2-D, sliced Wasserstein), or
- held-out data (:class:`HeldOut`): the data set's test split (``split: test``) or, for a
  sampled toy set, a fresh draw with another seed. Samples are scored by sliced Wasserstein
  and MMD against it, each beside its floor: the same metric between as many training points
  and the same held-out set (two independent draws of real data at the same sizes).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..metrics.mmd import mmd
from ..metrics.sliced_wasserstein import sliced_wasserstein
from ..training.rebuild import UnsafeConfigError, rebuild
from ._config import dataset_tensor

log = logging.getLogger(__name__)

__all__ = ["HeldOut", "checkpoint_data"]

HELD_OUT_MAX = 20_000  # points of a fresh toy draw kept as the held-out set
MMD_MAX = 4_000  # samples (and held-out points) in the MMD and its floor


@dataclass
class HeldOut:
    """Held-out data of a trained model, and as many training points for the floors.

    ``source`` says where the held-out points come from; ``to_unit`` maps images to [0, 1]."""

    train: Tensor
    held_out: Tensor
    source: str
    to_unit: Any = None
    to_data: Any = None  # model space -> the data's units (array data's standardisation)
    log_det: float = 0.0  # log |det d(model)/d(data)|: log p(x) = log p_model(z) + log_det

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.held_out.shape[1:])

    @property
    def dim(self) -> int:
        return math.prod(self.event_shape)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """``min(n, len(held_out))`` held-out points in a random order (the likelihood's test
        points); fewer than ``n`` are logged, never padded with repeats."""
        if n > len(self.held_out):
            log.warning("only %d held-out points for num_samples=%d", len(self.held_out), n)
        cpu = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        idx = torch.randperm(len(self.held_out), generator=cpu)[:n]
        return self.held_out[idx].to(device=device, dtype=dtype)

    def evaluate(self, x: Tensor, seed: int) -> dict[str, Any]:
        """Sliced W2 and MMD^2 (unbiased, on the first ``MMD_MAX``) to the held-out set, each
        with its floor: the same metric for as many training points in place of ``x``."""
        n = min(len(x), len(self.train))
        units = self.to_data or (lambda v: v)  # metrics in the data's units
        x64, ref = units(x[:n].detach().cpu().double()), units(self.held_out.double())
        real = self.train[torch.randperm(len(self.train), generator=_gen(seed))[:n]].double()
        real = units(real)
        m = min(n, MMD_MAX)  # MMD costs O(n m): a subset keeps it to about a second

        def sw(a: Tensor) -> float:
            return float(sliced_wasserstein(a, ref, generator=_gen(seed + 2)))

        out = {
            "sliced_wasserstein": sw(x64),
            "sliced_wasserstein_floor": sw(real),
            "mmd": float(mmd(x64[:m], ref[:m])),
            "mmd_floor": abs(float(mmd(real[:m], ref[:m]))),
            "reference": self.source,
            "reference_n": len(ref),
            "scored_n": n,
            "mmd_n": m,
        }
        if self.event_shape == DIGITS_SHAPE and n < IMAGE_MIN:
            out["image_metrics"] = f"not computed: fewer than {IMAGE_MIN} samples"
        elif self.event_shape == DIGITS_SHAPE:  # images the digits extractor reads
            out.update(digits_scores(x[:n].detach().cpu().float(), real.float(), ref.float()))
        bad = [k for k, v in out.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad or not bool(torch.isfinite(x).all()):
            raise FloatingPointError(f"non-finite samples or metrics ({', '.join(bad) or 'x'})")
        return out


DIGITS_SHAPE = (1, 8, 8)
IMAGE_MIN = 128  # samples for the image metrics: FD needs n > the 64 feature dimensions


def digits_scores(x: Tensor, real: Tensor, held_out: Tensor) -> dict[str, Any]:
    """Image metrics in the digits extractor's features (:mod:`sde_diffusion.metrics`): FD,
    KID, precision/recall, density/coverage and the classifier's class TV, each against the
    held-out images and beside its floor (``real``, as many training images, in place of
    ``x``). Samples are clipped to the data range [-1, 1] first, as pixels would be."""
    from ..metrics import (
        classifier_score,
        density_coverage,
        digits_features,
        extract_features,
        feature_statistics,
        frechet_distance,
        kid,
        precision_recall,
    )

    net, digest = digits_features()
    x = x.clamp(-1, 1)
    ref_feat = extract_features(net, held_out)
    ref_stats = feature_statistics(ref_feat, digest)
    with torch.no_grad():
        ref_logits = net.logits(held_out)
    out: dict[str, Any] = {"image_features": f"digits CNN {digest[:12]}"}
    for suffix, images in (("", x), ("_floor", real)):
        feat = extract_features(net, images)
        pr = precision_recall(ref_feat, feat)
        dc = density_coverage(ref_feat, feat)
        with torch.no_grad():
            cls = classifier_score(net.logits(images), ref_logits)
        out.update({
            f"fd{suffix}": frechet_distance(feature_statistics(feat, digest), ref_stats),
            f"kid{suffix}": kid(feat, ref_feat, subsets=20).mean,
            f"precision{suffix}": pr.precision, f"recall{suffix}": pr.recall,
            f"density{suffix}": dc.density, f"coverage{suffix}": dc.coverage,
            f"class_tv{suffix}": cls.tv, f"class_confidence{suffix}": cls.confidence,
        })  # fmt: skip
    return out


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def checkpoint_data(stored: dict[str, Any], transform: dict[str, Any] | None = None) -> Any:
    """The reference for a checkpoint's samples, from its stored config (plain data): the
    exact :class:`GaussianMixture` when the training data is one, else :class:`HeldOut`
    (with ``transform``, the stored standardisation, to map samples to the data's units)."""
    node = stored.get("train_data")
    if not isinstance(node, dict):
        raise ValueError("the checkpoint records no train_data: sample it with data=...")
    try:
        dataset = rebuild(node, "train_data")
    except (FileNotFoundError, ValueError) as err:
        if isinstance(err, UnsafeConfigError):
            raise
        raise ValueError(
            f"the data this checkpoint was trained on cannot be read ({err}); restore it, or "
            f"give data=... to score the samples against"
        ) from err
    mixture = getattr(dataset, "mixture", None)
    if mixture is not None:
        return mixture
    train = dataset_tensor(dataset)
    if "split" in node:
        held = dataset_tensor(rebuild({**node, "split": "test"}, "train_data"))
        source = "the data set's test split"
    elif "seed" in node:
        n = min(int(node.get("n", HELD_OUT_MAX)), HELD_OUT_MAX)
        fresh = {**node, "seed": int(node["seed"]) + 1_000_003, **({"n": n} if "n" in node else {})}
        held = dataset_tensor(rebuild(fresh, "train_data"))
        source = "a fresh draw of the training distribution (another seed)"
    else:  # no way to draw more: the last fifth of the training data, said so
        cut = max(1, len(train) // 5)
        train, held = train[:-cut], train[-cut:]
        source = "the last fifth of the training data (the data set has no held-out split)"
        log.warning("no held-out data for this checkpoint: scoring against %s", source)
    to_unit = getattr(getattr(dataset, "scaler", None), "to_unit", None)
    if transform is None:
        return HeldOut(train, held, source, to_unit)
    from ..data.arrays import Standardiser

    standardiser = Standardiser.from_state(transform, int(train[0].numel()))
    return HeldOut(train, held, source, to_unit, standardiser.inverse, standardiser.log_det)
