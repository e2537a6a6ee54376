"""A trained score model loaded from a checkpoint, safely: the SDE and network it names are
rebuilt from the allow-list of :mod:`.rebuild`, its weights load with ``weights_only=True``
after the archive's CRCs are checked, and any defect is one :class:`CheckpointError` line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor, nn

from .checkpoint import CheckpointError, load_checkpoint, require
from .rebuild import check_plain, rebuild

__all__ = ["TrainedModel", "load_trained", "load_weights", "stored_config"]


class TrainedModel:
    """A loaded checkpoint: the SDE it was trained with, the score model, the data shape, the
    step and the stored training config (``config``, plain data)."""

    def __init__(
        self,
        sde: Any,
        model: nn.Module,
        data_shape: tuple[int, ...],
        step: int,
        config: dict[str, Any] | None = None,
        data_transform: dict[str, Any] | None = None,
    ):
        self.sde, self.model, self.data_shape, self.step = sde, model, data_shape, step
        self.config = config or {}  # the stored training config, plain data (never built)
        self.data_transform = data_transform  # e.g. the standardisation of array data

    @property
    def num_classes(self) -> int | None:
        """The classes of a class-conditional model (labels 0 .. num_classes - 1), else None."""
        return getattr(self.model, "num_classes", None)

    def score_fn(self, label: int | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        """score(x, t) on x's device and dtype (the weights move there on first use).

        Differentiable in x (the likelihood's divergence and the grid tuner's curvature need
        that); :func:`sde_diffusion.sample` itself runs under ``torch.no_grad()``.
        ``label``: s(x, t | y = label) of a class-conditional model (None: the unconditional
        score, which for a class-conditional model is its null label).
        """
        from ..guidance.labels import bind_label, check_label

        model = self.model
        if label is not None:
            if self.num_classes is None:
                raise ValueError(
                    f"label={label!r}: this checkpoint's model is unconditional (trained "
                    "without model.num_classes); it takes no label"
                )
            label = check_label(label, self.num_classes)
        bound = bind_label(model, label)

        def score(x: Tensor, t: Tensor) -> Tensor:
            p = next(model.parameters())
            if p.device != x.device:
                model.to(x.device)
            return bound(x.to(p.dtype), t.to(p.dtype)).to(x.dtype)

        return score


_CACHE: dict[tuple[str, float, int, bool, tuple[type, ...]], TrainedModel] = {}


#: what a score model's stored training config must hold
SCORE_MODEL_KEYS = ("sde", "model", "parametrisation")


def stored_config(
    state: dict[str, Any], path: str | Path, keys: tuple[str, ...] = SCORE_MODEL_KEYS
) -> dict[str, Any]:
    """The training config a checkpoint records, as plain data (``yaml.safe_load``; no
    interpolation is resolved and nothing is built); ``keys``: what it must hold (a score
    model's by default)."""
    require(state, ("config", "data_shape", "step"), path)
    text = state["config"]
    if not isinstance(text, str):
        raise CheckpointError(f"checkpoint {str(path)!r}: its config is not YAML text")
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: its config is not valid YAML") from err
    if not isinstance(cfg, dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: its config is not a mapping")
    check_plain(cfg, "config")
    for key in keys:
        if key not in cfg:
            raise CheckpointError(f"checkpoint {str(path)!r}: its config lacks {key!r}")
    return cfg


def load_weights(model: nn.Module, weights: Any, what: str) -> None:
    """``model.load_state_dict(weights)``, a mismatch named in one line (keys and shapes)."""
    if not isinstance(weights, dict):
        raise CheckpointError(f"{what} is not a state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [
        f"{k}: {tuple(weights[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in own.items()
        if k in weights and isinstance(weights[k], Tensor) and weights[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[0]}")
        raise CheckpointError(f"{what} does not fit the model: {'; '.join(parts)}")
    model.load_state_dict(weights)


def load_trained(path: str | Path, ema: bool = True, allow: tuple[type, ...] = ()) -> TrainedModel:
    """Rebuild the SDE and score model a checkpoint was trained with, with its EMA weights
    (``ema=False``: the raw weights).

    Nothing the file names is called unless it is in the allow-list of the project's own SDE
    and network classes (:func:`sde_diffusion.training.rebuild.rebuild`); ``allow`` adds
    classes of your own, as class objects. The weights load with ``weights_only=True`` after
    the archive's CRCs are checked. Any bad file raises :class:`CheckpointError` in one line.
    """
    from ..parametrisation import ScoreModel

    path = Path(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={str(path)!r}: no such file")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime, st.st_size, ema, tuple(allow))
    if key in _CACHE:
        return _CACHE[key]
    state = load_checkpoint(path)
    cfg = stored_config(state, path)
    sde = rebuild(cfg["sde"], "sde")
    net = rebuild(cfg["model"], "model", extra=allow)
    if not isinstance(net, nn.Module):
        raise CheckpointError(f"checkpoint {str(path)!r}: its model is not a network")
    try:
        model = ScoreModel(net, sde, parametrisation=str(cfg["parametrisation"]))
    except ValueError as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: {err}") from err
    if ema:
        require(state, ("ema",), path)
        prefix = "module."
        if not isinstance(state["ema"], dict):
            raise CheckpointError(f"checkpoint {str(path)!r}: its 'ema' entry is not a state dict")
        weights = {k[len(prefix) :]: v for k, v in state["ema"].items() if k.startswith(prefix)}
        load_weights(model, weights, f"checkpoint {str(path)!r}: the EMA weights")
    else:
        load_weights(model, state["model"], f"checkpoint {str(path)!r}: the weights")
    model.eval().requires_grad_(False)  # inference only: gradients flow to x, not the weights
    try:
        shape = tuple(int(s) for s in state["data_shape"])
        step = int(state["step"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: bad data_shape or step") from err
    transform = state.get("data_transform")
    if transform is not None:
        check_plain(transform, "data_transform")
    _CACHE[key] = TrainedModel(sde, model, shape, step, cfg, transform)
    return _CACHE[key]
