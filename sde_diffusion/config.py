"""Compose the packaged Hydra configs from Python (notebooks, scripts), as the apps do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra import compose as _compose
from hydra import initialize_config_module
from hydra.utils import instantiate
from omegaconf import DictConfig


def compose(config_name: str = "sample", overrides: Sequence[str] = ()) -> DictConfig:
    """The config an app would run with, e.g. ``compose("sample", ["sde=ve", "solver=pc"])``.

    Works whether the package is installed editable or from a wheel: the configs ship
    inside it as ``sde_diffusion.conf``.
    """
    with initialize_config_module(config_module="sde_diffusion.conf", version_base="1.3"):
        return _compose(config_name=config_name, overrides=list(overrides))


def build(cfg: DictConfig, key: str) -> Any:
    """``hydra.utils.instantiate(cfg[key])``: the SDE, solver or dataset object."""
    return instantiate(cfg[key])
