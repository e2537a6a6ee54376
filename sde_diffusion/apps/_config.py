"""Config names to objects, for the apps: the packaged groups, Hydra's ``instantiate`` on the
command line's own config (never on a file: see :mod:`sde_diffusion.training.rebuild`), and a
data set as one tensor. Shared by every app module, importing none of them."""

from __future__ import annotations

from importlib import resources
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from ._common import UsageError

__all__ = ["build", "build_stored", "dataset_tensor", "group_options", "load_group"]


def group_options(group: str) -> list[str]:
    """The config names available in a group of the packaged ``conf/`` (e.g. ``"solver"``)."""
    folder = resources.files("sde_diffusion.conf") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_group(group: str, name: str) -> DictConfig:
    """Load ``conf/<group>/<name>.yaml`` from the package, refusing unknown names."""
    options = group_options(group)
    if name not in options:
        raise UsageError(
            f"{group}={name!r} is not a known {group}; choose one of {', '.join(options)}"
        )
    text = (resources.files("sde_diffusion.conf") / group / f"{name}.yaml").read_text()
    return OmegaConf.create(text)


def build(node: Any, key: str, **kwargs: Any) -> Any:
    """Instantiate a config node (from the command line, never from a file), turning Hydra's
    wrapped errors into one clear line."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise UsageError(f"{key}: {cause}") from err


def build_stored(node: Any, key: str, **kwargs: Any) -> Any:
    """Build a node of a config stored in a checkpoint (data, never code) through the
    allow-list of :mod:`sde_diffusion.training.rebuild`; the loss is built from ``conf/``."""
    from ..training.rebuild import rebuild

    group = "" if key == "loss" else key  # the loss is configured in train.yaml itself
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    try:
        return rebuild(plain, group, **kwargs)
    except TypeError as err:
        raise UsageError(f"{key}: {err}") from err


def dataset_tensor(dataset: Any) -> Tensor:
    """All items of a data set as one float32 tensor ``(N, ...)`` (its ``.data`` if it has one)."""
    data = getattr(dataset, "data", None)
    if not isinstance(data, Tensor):
        items = [dataset[i] for i in range(len(dataset))]
        if not items:
            raise UsageError("train_data: the data set is empty")
        data = torch.stack([x[0] if isinstance(x, tuple | list) else x for x in items])
    if data.ndim < 2 or data.shape[0] == 0:
        raise UsageError(
            f"train_data: expected a non-empty (N, ...) data set, got {tuple(data.shape)}"
        )
    data = data.float()
    finite = torch.isfinite(data.reshape(len(data), -1)).all(dim=1)
    if not bool(finite.all()):  # once, here: not "the loss is nan" some steps later
        bad = (~finite).nonzero().flatten()
        row = data[int(bad[0])].flatten()
        values = ", ".join(f"{v:g}" for v in row[:8].tolist()) + (", ..." if len(row) > 8 else "")
        raise UsageError(
            f"train_data: row {int(bad[0])} is not finite ([{values}]); {len(bad)} of "
            f"{len(data)} rows hold NaN or inf: clean the data set"
        )
    return data
