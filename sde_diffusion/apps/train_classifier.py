"""``sde-train-classifier``: train a noise-conditional classifier p_t(y | x) for classifier
guidance, by cross-entropy on noised labelled data (Dhariwal & Nichol, 2021, Sec. 4).

    sde-train-classifier                                     # eight Gaussians, 8 classes
    sde-train-classifier train_data=digits classifier_net=cnn steps=3000
    sde-train-classifier hydra.run.dir=<that run's dir> resume=true   # after a kill or a stop

Writes ``checkpoints/ckpt_<step>.pt`` every ``checkpoint_every`` steps, atomically (a SIGINT or
SIGTERM finishes the step and saves one; ``resume=true`` goes on from the newest readable one
with the config stored in it, as ``sde-train`` does). Load it with
:func:`sde_diffusion.guidance.classifier.load_classifier`, or give it to
``sde-sample classifier=PATH label=K guidance=W``. Also ``classifier_summary.json``: the final
loss and, for a Gaussian-mixture data set, the mean total variation between the trained and the
exact class probabilities at t = 0.1, 0.3, 0.6 (``tv_to_exact``); for a data set with a test
split (digits), the accuracy on its noised test items at those t (``test_accuracy``).
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from ..guidance import ExactClassifier
from ..guidance.classifier import ClassifierLoss, NoiseClassifier, classifier_tv
from ..training import CheckpointManager, Trainer
from ..training.signals import Interrupted, stop_requests
from ..training.trained import stored_config
from ._common import (
    UsageError,
    atomic_write_json,
    check_bool,
    check_float,
    check_int,
    resolve_device,
    set_threads,
)
from ._config import build, build_stored, dataset_tensor
from ._labels import dataset_labels
from ._model import fill_model_config
from ._precheck import precheck
from ._resume import (
    check_stored,
    newest_valid,
    remove_orphans,
    restore_or_refuse,
    resume_config,
    resume_record,
)
from ._rundir import run_in_dir

log = logging.getLogger(__name__)
GROUPS = ("sde", "train_data", "classifier_net")
TV_TIMES = (0.1, 0.3, 0.6)  #: where the summary compares with the exact classifier
#: keys that may differ from the stored run on resume (the last, ``resume``, always does)
RESUMABLE = ("steps", "max_seconds", "device", "threads", "progress", "resume")
#: what a classifier checkpoint's stored config holds (each checked against its allow-list)
STORED_KEYS = ("sde", "classifier_net", "train_data")


def _classifier_config(cfg: DictConfig, shape: tuple[int, ...], num_classes: int) -> DictConfig:
    """The classifier config with the data's shape and the number of classes filled in."""
    net_cfg = fill_model_config(cfg.classifier_net, shape)
    key = "out_dim" if "out_dim" in net_cfg else "num_classes"
    if net_cfg.get(key) is None:
        net_cfg[key] = num_classes
    elif net_cfg[key] != num_classes:
        raise UsageError(
            f"classifier_net.{key}={net_cfg[key]} but the data has {num_classes} classes"
        )
    return net_cfg


def run(cfg: DictConfig, out_dir: Path, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Train as configured; return the summary also written to ``classifier_summary.json``.

    ``resume=true``: go on from the newest readable checkpoint in ``out_dir`` with the config
    stored in it (``overrides``: this command line's, checked against it; only
    :data:`RESUMABLE` keys may differ). A SIGINT or SIGTERM finishes the step, saves a
    checkpoint and raises ``Interrupted``."""
    resumed = None
    if check_bool("resume", cfg.get("resume", False)):
        remove_orphans(out_dir / "checkpoints")
        resumed = newest_valid(CheckpointManager(out_dir / "checkpoints"), "cpu", STORED_KEYS)
        stored = stored_config(resumed[1], resumed[0], STORED_KEYS)
        stored = OmegaConf.to_container(cfg, resolve=True) | stored  # keys added since: today's
        cfg = resume_config(stored, cfg, overrides or (), RESUMABLE)
        check_stored(cfg, {key: key for key in STORED_KEYS})
    make = build_stored if resumed else build
    set_threads(cfg.get("threads"))
    device = resolve_device(str(cfg.device))
    steps, seed = check_int("steps", cfg.steps, 1), check_int("seed", cfg.seed, 0)
    every = check_int("checkpoint_every", cfg.get("checkpoint_every", steps), 1)
    keep_last = check_int("keep_last", cfg.get("keep_last", 1), 1)
    max_seconds = cfg.get("max_seconds")
    if max_seconds is not None:
        max_seconds = check_float("max_seconds", max_seconds, minimum=0, above=True)
    dataset = make(cfg.train_data, "train_data")
    data = dataset_tensor(dataset)
    labels = dataset_labels(dataset, len(data))
    if labels is None:
        raise UsageError("train_data has no labels: a classifier needs labelled data")
    num_classes = int(labels.max()) + 1
    if num_classes < 2 or int(labels.min()) < 0:
        raise UsageError(f"train_data: labels must be 0 .. K-1 with K >= 2, got {labels.unique()}")
    shape = tuple(data.shape[1:])
    net_cfg = _classifier_config(cfg, shape, num_classes)
    sde = make(cfg.sde, "sde")
    torch.manual_seed(seed)
    model = NoiseClassifier(make(net_cfg, "classifier_net"), sde, num_classes)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["classifier_net"] = OmegaConf.to_container(net_cfg)
    extra = {"config": OmegaConf.to_yaml(resolved), "data_shape": list(shape)}
    extra["num_classes"] = num_classes
    trainer = Trainer(
        model,
        ClassifierLoss(sde, eps=check_float("eps", cfg.eps, minimum=0, above=True)),
        data,
        batch_size=check_int("batch_size", cfg.batch_size, 1),
        lr=check_float("lr", cfg.lr, minimum=0, above=True),
        weight_decay=check_float("weight_decay", cfg.weight_decay, minimum=0),
        warmup=check_int("warmup", cfg.warmup, 0),
        grad_clip=check_float("grad_clip", cfg.grad_clip, minimum=0),
        ema_decay=check_float("ema_decay", cfg.ema_decay, minimum=0, maximum=1),
        ema_warmup=check_bool("ema_warmup", cfg.ema_warmup),
        lr_decay=str(cfg.lr_decay),
        decay_steps=steps,
        seed=seed,
        device=device,
        labels=labels,
    )
    checkpoints = CheckpointManager(out_dir / "checkpoints", keep_last=keep_last)
    restore_or_refuse(trainer, resumed, checkpoints)
    with stop_requests() as request:
        summary = trainer.fit(
            steps, max_seconds=max_seconds, checkpoints=checkpoints, checkpoint_every=every,
            extra_state=extra, progress=bool(cfg.progress), stop_request=request,
        )  # fmt: skip
    resume_hint = f"sde-train-classifier hydra.run.dir={out_dir} resume=true"
    if summary["stopped_by"] == "stop_request":
        signum = request.signum or signal.SIGTERM
        raise Interrupted(
            signum,
            f"interrupted by {signal.Signals(signum).name} at step {trainer.step}; checkpoint "
            f"saved to {checkpoints.path(trainer.step)}; resume with: {resume_hint}",
        )
    if summary["stopped_by"] == "max_seconds":
        log.warning("stopped by max_seconds=%s at step %d of %d; resume with: %s",
                    max_seconds, trainer.step, steps, resume_hint)  # fmt: skip
    summary.update(checkpoint=str(checkpoints.latest()), num_classes=num_classes)
    mixture = getattr(dataset, "mixture", None)
    if mixture is not None:  # a labelled mixture: the exact classifier grades the trained one
        labels_k = dataset.component_labels or list(range(mixture.n_components))
        exact = ExactClassifier(mixture, labels_k, sde)
        ema = trainer.ema.module.eval().cpu()
        summary["tv_to_exact"] = {t: classifier_tv(ema, exact, mixture, sde, t) for t in TV_TIMES}
    elif "split" in cfg.train_data:  # a data set with a test split: accuracy on noised test data
        test = make(OmegaConf.merge(cfg.train_data, {"split": "test"}), "train_data")
        ema = trainer.ema.module.eval().cpu()
        summary["test_accuracy"] = {
            t: noised_accuracy(ema, dataset_tensor(test), dataset_labels(test, len(test)), sde, t)
            for t in TV_TIMES
        }
    atomic_write_json(out_dir / "classifier_summary.json", summary)
    log.info("classifier trained to step %d, loss %.4f; %s", summary["step"],
             summary["final_loss"], summary["checkpoint"])  # fmt: skip
    return summary


def noised_accuracy(model: Any, x0: Any, labels: Any, sde: Any, t: float, seed: int = 0) -> float:
    """The fraction of x_t = alpha x_0 + sigma z (one draw each, ``seed``) classified right."""
    gen = torch.Generator().manual_seed(seed)
    tt = torch.full((len(x0),), float(t))
    alpha, sigma = sde.marginal(tt)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    xt = alpha.reshape(shape) * x0 + sigma.reshape(shape) * torch.randn(x0.shape, generator=gen)
    with torch.no_grad():
        return float((model(xt, tt).argmax(1) == labels).float().mean())


@hydra.main(
    config_path="pkg://sde_diffusion.conf", config_name="train_classifier", version_base="1.3"
)
def _hydra_main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    overrides = list(HydraConfig.get().overrides.task)
    context = {"resume": cfg.get("resume")}
    outputs = ("classifier_summary.json",)
    run_in_dir(lambda: run(cfg, out_dir, overrides), out_dir, outputs, True, context)


def main() -> None:
    """Console entry point of ``sde-train-classifier``."""
    precheck(sys.argv[1:], "train_classifier.yaml", GROUPS, __doc__)
    sys.argv += resume_record(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
