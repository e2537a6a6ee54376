"""Build score models from configs (for ``sde-train``) and from checkpoints (for the samplers)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from ..training.trained import TrainedModel, load_trained, load_weights, stored_config
from ._common import UsageError
from ._config import build

__all__ = [
    "TrainedModel",
    "build_score_model",
    "check_fits",
    "fill_model_config",
    "load_trained",
    "load_weights",
    "stored_config",
]


def _unset(cfg: DictConfig, key: str) -> bool:
    return key not in cfg or OmegaConf.is_missing(cfg, key) or cfg[key] is None


def fill_model_config(model_cfg: DictConfig, data_shape: tuple[int, ...]) -> DictConfig:
    """The model config with its shape arguments (``dim``; ``in_channels``, ``resolution``)
    taken from the data where left unset; set ones that do not fit the data are refused."""
    cfg = OmegaConf.create(OmegaConf.to_container(model_cfg, resolve=True))
    try:
        params = inspect.signature(get_class(cfg._target_)).parameters
    except Exception as err:
        raise UsageError(f"model: cannot import {cfg.get('_target_')!r} ({err})") from err
    name = str(cfg._target_).rsplit(".", 1)[-1]
    if "dim" in params:
        if len(data_shape) != 1:
            raise UsageError(
                f"model {name} takes flat vectors but the data has shape {data_shape}; "
                f"choose an image model such as model=unet"
            )
        want = {"dim": data_shape[0]}
    elif "in_channels" in params:
        if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
            raise UsageError(
                f"model {name} takes square images (C, H, H) but the data has shape "
                f"{data_shape}; choose a vector model such as model=mlp"
            )
        want = {"in_channels": data_shape[0]}
        if "resolution" in params:
            want["resolution"] = data_shape[1]
    else:
        want = {}
    for key, value in want.items():
        if _unset(cfg, key):
            cfg[key] = value
        elif cfg[key] != value:
            raise UsageError(
                f"model.{key}={cfg[key]} does not fit the data of shape {data_shape}: "
                f"set model.{key}={value} (or null to take it from the data)"
            )
    return cfg


def build_score_model(
    sde: Any, model_cfg: DictConfig, parametrisation: str, make: Callable[..., Any] = build
) -> nn.Module:
    """``ScoreModel(net, sde, parametrisation)`` around the network the config names, built
    by ``make(node, key)`` (``build``: Hydra, for the command line's own config)."""
    from ..parametrisation import ScoreModel

    net = make(model_cfg, "model")
    try:
        return ScoreModel(net, sde, parametrisation=parametrisation)
    except ValueError as err:
        raise UsageError(f"parametrisation: {err}") from err


def check_fits(model: nn.Module, x: Tensor) -> None:
    """One forward pass on a few data rows: the model must return the score shaped like x."""
    t = torch.full((x.shape[0],), 0.5, device=x.device, dtype=x.dtype)
    try:
        with torch.no_grad():
            out = model(x, t)
    except Exception as err:
        raise UsageError(
            f"the model does not fit data of shape {tuple(x.shape[1:])}: {err}"
        ) from err
    if tuple(out.shape) != tuple(x.shape):
        raise UsageError(
            f"the model maps data of shape {tuple(x.shape[1:])} to {tuple(out.shape[1:])}; "
            f"it must return the same shape"
        )
