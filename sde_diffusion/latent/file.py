"""Autoencoder files: load through the allow-list, check the sha256 digest, write slim copies.

An autoencoder file is a checkpoint of ``sde-train task=autoencoder`` (or a slim copy of one:
the EMA weights only, :func:`save_autoencoder`). Its config is data: the network is rebuilt
from the ``_target_`` names of the package's ``conf/autoencoder/*.yaml``
(:func:`sde_diffusion.training.rebuild.rebuild`), the weights load with ``weights_only=True``
after the archive's CRCs are checked, and every defect is one line.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ..digest import file_sha256
from ..training.checkpoint import CheckpointError, load_checkpoint, require, save_checkpoint
from ..training.rebuild import check_plain, rebuild
from ..training.trained import load_weights
from .codec import LatentCodec
from .scale import LatentScale

__all__ = [
    "DIGITS_AUTOENCODER",
    "default_autoencoder_path",
    "file_sha256",
    "load_autoencoder",
    "save_autoencoder",
]

DIGITS_AUTOENCODER = "digits_autoencoder.pt"  #: shipped: KL-f2, 2 latent channels, 1x8x8 digits
_CACHE: dict[tuple[str, int, int, tuple[type, ...]], LatentCodec] = {}


def default_autoencoder_path() -> Path:
    """The shipped digits autoencoder (``python -m sde_diffusion.latent.train_digits_autoencoder``)."""
    return Path(str(resources.files(__package__).joinpath(DIGITS_AUTOENCODER)))


def _stored(state: dict[str, Any], where: str) -> dict[str, Any]:
    require(state, ("config", "data_shape"), where)
    try:
        cfg = yaml.safe_load(state["config"]) if isinstance(state["config"], str) else None
    except yaml.YAMLError:
        cfg = None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"autoencoder {where!r}: its config is not a YAML mapping")
    check_plain(cfg, "config")
    if cfg.get("task", "score") != "autoencoder" or not isinstance(cfg.get("autoencoder"), dict):
        raise CheckpointError(
            f"{where!r} is not an autoencoder (task={cfg.get('task', 'score')!r}): latent= takes "
            f"a checkpoint of sde-train task=autoencoder"
        )
    if "latent_scale" not in state:
        raise CheckpointError(
            f"autoencoder {where!r} has no latent scale (its training did not finish): resume "
            f"its run (sde-train hydra.run.dir=<its run dir> resume=true) to measure it"
        )
    return cfg


def load_autoencoder(
    path: str | Path | None = None, sha256: str | None = None, allow: tuple[type, ...] = ()
) -> LatentCodec:
    """The autoencoder and latent scale stored in ``path`` (default: the shipped digits one).

    ``sha256``: the digest the file must have (a latent score checkpoint records it); a file
    that differs is refused. ``allow`` adds network classes of your own, as class objects.
    A checkpoint written before training finished may lack the latent scale: resume its run.
    """
    path = default_autoencoder_path() if path is None else Path(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"autoencoder {str(path)!r}: no such file")
    digest = file_sha256(path)
    if sha256 is not None and digest != sha256:
        raise CheckpointError(
            f"autoencoder {str(path)!r} has sha256 {digest[:16]}..., not the {sha256[:16]}... "
            f"the score model was trained with: it was changed or replaced"
        )
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, tuple(allow))
    if key in _CACHE:
        return _CACHE[key]
    where = str(path)
    state = load_checkpoint(path)
    cfg = _stored(state, where)
    node = cfg["autoencoder"].get("model")
    net = rebuild(node, "autoencoder", extra=allow)
    if not isinstance(net, nn.Module) or not hasattr(net, "latent_shape"):
        raise CheckpointError(f"autoencoder {where!r}: its model is not an autoencoder")
    if isinstance(state.get("ema"), dict):
        weights = {k[7:]: v for k, v in state["ema"].items() if k.startswith("module.")}
        load_weights(net, weights, f"autoencoder {where!r}: the EMA weights")
    else:
        load_weights(net, state["model"], f"autoencoder {where!r}: the weights")
    try:
        shape = tuple(int(s) for s in state["data_shape"])
        scale = LatentScale.from_state(state["latent_scale"], net.latent_shape(shape)[0])
        codec = LatentCodec(net, scale, shape, digest, str(path.resolve()))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"autoencoder {where!r}: {str(err).splitlines()[0]}") from err
    _CACHE[key] = codec
    return codec


def save_autoencoder(
    path: str | Path,
    autoencoder: nn.Module,
    model_node: dict[str, Any],
    scale: LatentScale,
    data_shape: tuple[int, ...],
    step: int = 0,
) -> Path:
    """Write an autoencoder file atomically: the weights, the config node that rebuilds the
    network (plain data naming an allowed class), the latent scale and the image shape."""
    check_plain(model_node, "model_node")
    config = {"task": "autoencoder", "autoencoder": {"model": model_node}}
    state = {
        "format": 1,
        "step": int(step),
        "model": {k: v.detach().cpu() for k, v in autoencoder.state_dict().items()},
        "config": yaml.safe_dump(config, sort_keys=False),
        "data_shape": [int(s) for s in data_shape],
        "latent_scale": scale.state(),
    }
    return save_checkpoint(path, state)
