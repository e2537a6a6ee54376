"""The latent paths of the apps: ``sde-train task=autoencoder``, ``sde-train latent=PATH``, and
the decoded scoring of latent checkpoints in ``sde-sample``, ``sde-compare``, ``sde-likelihood``.

A latent score checkpoint records ``latent`` (the autoencoder file as given) and
``latent_reference`` (its resolved path, sha256 digest and the two shapes) in its config. Its
samples are latents; they are decoded before anything is scored or saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from ..latent import LatentCodec, encode_cached, load_autoencoder, measure_latent_scale
from ..latent.cache import cache_dir
from ._common import UsageError, atomic_save
from ._model import fill_model_config
from ._reference import HeldOut

log = logging.getLogger(__name__)

__all__ = [
    "LIKELIHOOD_NOTE",
    "LatentHeldOut",
    "build_autoencoder",
    "decoded_data",
    "finish_autoencoder",
    "latent_training_data",
    "reconstruction_figure",
    "task_of",
]

TASKS = ("score", "autoencoder")
LIKELIHOOD_NOTE = (
    "latent likelihood: log p(u) of the scaled latent u = (E(x) - m) / s under the score "
    "model's probability-flow ODE, in nats and bits per latent dimension; it is exact for the "
    "latents but does not bound log p(x) of the images (the encoder is not invertible and no "
    "decoder likelihood p(x|z) enters), so it is not comparable with a pixel model's bits/dim"
)


def task_of(cfg: DictConfig) -> str:
    """``task`` (``score`` or ``autoencoder``), checked; ``latent=`` only with ``score``."""
    task = str(cfg.get("task", "score"))
    if task not in TASKS:
        raise UsageError(f"task={task!r} is not a task; choose one of {', '.join(TASKS)}")
    if task == "autoencoder" and cfg.get("latent") is not None:
        raise UsageError(
            "latent= trains a score model in an autoencoder's latent space; task=autoencoder "
            "trains the autoencoder itself: give one of them"
        )
    return task


def _codec(path: str, sha256: str | None, what: str) -> LatentCodec:
    try:
        return load_autoencoder(path, sha256=sha256)
    except FileNotFoundError as err:
        if sha256 is None:
            raise UsageError(f"latent={path!r}: no such file") from err
        raise UsageError(
            f"{what} was trained in the latent space of the autoencoder {path!r} (sha256 "
            f"{sha256[:16]}...), which is missing: restore that file"
        ) from err


def latent_training_data(
    cfg: DictConfig, data: Tensor, to_unit: Callable[[Tensor], Tensor] | None
) -> tuple[Tensor, Callable[[Tensor], Tensor], dict[str, Any]] | None:
    """With ``latent=PATH``: the scaled latents of ``data`` (encoded once, cached), a map of
    latents to [0, 1] images for the figures, and the reference the checkpoint records.
    A resumed run checks that the file still has the digest it began with. Else None."""
    path = cfg.get("latent")
    if path is None:
        return None
    stored = cfg.get("latent_reference")
    expected = None if stored is None else str(stored["sha256"])
    where = str(stored["path"]) if stored is not None else str(path)
    codec = _codec(where, expected, "this run")
    shape = tuple(data.shape[1:])
    if shape != codec.data_shape:
        raise UsageError(
            f"latent={path!r} encodes images of shape {codec.data_shape}, but train_data has "
            f"shape {shape}"
        )
    try:
        fill_model_config(cfg.model, codec.latent_shape)
    except UsageError as err:
        raise UsageError(
            f"latent={path!r} gives latents of shape {codec.latent_shape}, which the model "
            f"config does not fit: {err}"
        ) from err
    latents = encode_cached(codec, data)
    log.info("training on %s latents of %s (cache: %s)", codec.latent_shape, path, cache_dir())
    unit = to_unit or (lambda v: ((v + 1) / 2).clamp(0, 1))
    return latents, lambda u: unit(codec.decode(u.float())), codec.reference()


def build_autoencoder(
    cfg: DictConfig, shape: tuple[int, ...], make: Callable[..., Any]
) -> tuple[nn.Module, Any, DictConfig]:
    """``task=autoencoder``: the network and loss of the ``autoencoder`` group, the network's
    shape arguments taken from the data (``make``: Hydra, or the allow-list on resume)."""
    if len(shape) != 3:
        raise UsageError(
            f"task=autoencoder needs images (C, H, W), but train_data has items of shape {shape}"
        )
    node = cfg.autoencoder
    model_cfg = fill_model_config(node.model, shape)
    model = make(model_cfg, "autoencoder")
    loss = make(node.loss, "autoencoder")
    try:
        model.latent_shape(shape)
    except ValueError as err:
        raise UsageError(f"autoencoder.model: {err}") from err
    return model, loss, model_cfg


def finish_autoencoder(trainer: Any, checkpoints: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Measure the latent scale with the final EMA weights on the training set and write the
    last checkpoint again with it (``latent_scale``); return the scale's plain state."""
    ema = trainer.ema.module.eval()
    scale = measure_latent_scale(ema.encode, trainer.data)
    extra["latent_scale"] = scale.state()
    if trainer.step > 0:
        trainer.save(checkpoints, extra)
    log.info("latent scale: shift %s, scale %s", extra["latent_scale"]["shift"],
             extra["latent_scale"]["scale"])  # fmt: skip
    return extra["latent_scale"]


def reconstruction_figure(
    model: nn.Module, data: Tensor, path: Path, title: str, to_unit: Callable | None = None
) -> None:
    """Training images beside their reconstructions D(E(x)) (posterior means)."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plot import image_grids

    model.eval()
    x = data[:64]
    with torch.no_grad():
        r = model.decode(model.encode(x))
    unit = to_unit or (lambda v: ((v + 1) / 2).clamp(0, 1))
    fig = image_grids({f"data ({title})": unit(x).cpu(), "reconstructions": unit(r).cpu()},
                      value_range=(0.0, 1.0))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


@dataclass
class LatentHeldOut(HeldOut):
    """Held-out data of a latent checkpoint: ``train`` and ``held_out`` are scaled latents
    (samples and likelihood test points live there); :meth:`evaluate` decodes the samples and
    scores them against the pixel data (``pixels``), image metrics included."""

    pixels: HeldOut | None = None
    codec: LatentCodec | None = None
    likelihood_note: str = LIKELIHOOD_NOTE

    def evaluate(self, x: Tensor, seed: int) -> dict[str, Any]:
        images = self.codec.decode(x.detach().cpu().float())
        out = self.pixels.evaluate(images, seed)
        out.update(space="latent (scored decoded)", autoencoder=self.codec.path,
                   autoencoder_sha256=self.codec.sha256)  # fmt: skip
        return out


def decoded_data(stored: dict[str, Any], data: Any, what: str = "the checkpoint") -> Any:
    """``data`` for a pixel checkpoint; for a latent one (``latent_reference`` in its stored
    config), its held-out data encoded, with samples decoded before they are scored."""
    ref = stored.get("latent_reference")
    if ref is None:
        return data
    if not isinstance(data, HeldOut) or not isinstance(ref, dict):
        raise UsageError(f"{what} has a malformed latent reference or no held-out image data")
    codec = _codec(str(ref.get("path")), str(ref.get("sha256")), what)
    if codec.data_shape != data.event_shape:
        raise UsageError(
            f"the autoencoder of {what} encodes images of shape {codec.data_shape}, its data "
            f"has shape {data.event_shape}"
        )
    train, held = encode_cached(codec, data.train), encode_cached(codec, data.held_out)
    source = f"{data.source}, encoded by the autoencoder"
    return LatentHeldOut(train, held, source, data.to_unit, codec.decode, pixels=data, codec=codec)
