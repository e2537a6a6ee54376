"""``sde-train resume=true``: continue the run as it was configured, from its newest good file.

The run's config is the one stored in its checkpoint (plain data, rebuilt through the
allow-list of :mod:`sde_diffusion.training.rebuild`), not the current defaults. An override on
the command line that disagrees with it is refused, except for :data:`RESUMABLE` keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..training.checkpoint import CheckpointError, CheckpointManager, load_checkpoint
from ..training.rebuild import check_allowed
from ..training.trained import SCORE_MODEL_KEYS
from ._common import UsageError
from ._model import stored_config

log = logging.getLogger(__name__)

__all__ = [
    "RESUMABLE",
    "check_stored",
    "newest_valid",
    "remove_orphans",
    "resume_config",
    "resume_record",
    "restore_or_refuse",
]

# Keys that may differ from the stored run: how long to go on, and where/how to run.
RESUMABLE = ("train.steps", "train.max_seconds", "device", "threads", "progress", "resume")


def remove_orphans(directory: Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that a kill interrupted."""
    if not directory.is_dir():
        return []
    orphans = [p for p in directory.iterdir() if p.name.startswith(".") and p.suffix == ".tmp"]
    for p in orphans:
        p.unlink(missing_ok=True)
    if orphans:
        log.info("removed %d unfinished checkpoint file(s) in %s", len(orphans), directory)
    return orphans


def newest_valid(
    manager: CheckpointManager,
    map_location: Any = "cpu",
    config_keys: tuple[str, ...] = SCORE_MODEL_KEYS,
) -> tuple[Path, dict]:
    """The newest checkpoint that loads (CRCs, keys and stored config, which must hold
    ``config_keys``, all good); each newer one that does not is skipped with a one-line
    warning."""
    files = manager.list()
    if not files:
        raise UsageError(f"resume=true but {manager.directory} holds no checkpoint")
    for path in reversed(files):
        try:
            state = load_checkpoint(path, map_location=map_location)
            stored_config(state, path, config_keys)
            for key in ("ema", "optimizer", "scheduler", "scaler", "rng"):
                if key not in state:
                    raise CheckpointError(f"checkpoint {str(path)!r} lacks {key!r}")
            return path, state
        except CheckpointError as err:
            log.warning("skipping unreadable checkpoint: %s", err)
    raise CheckpointError(f"resume=true but no checkpoint in {manager.directory} is readable")


def check_stored(cfg: DictConfig, groups: dict[str, str]) -> None:
    """Every ``_target_`` under ``cfg[key]`` in the table of ``groups[key]`` (absent keys
    skipped), before anything reads the resumed config: filling a model config in from the
    data's shape inspects the class it names, which imports that class's module."""
    for key, group in groups.items():
        node = OmegaConf.select(cfg, key)
        if node is not None:
            plain = OmegaConf.to_container(node) if isinstance(node, DictConfig) else node
            check_allowed(plain, group)


def _key(override: str) -> tuple[str, str] | None:
    key, sep, value = override.partition("=")
    key = key.lstrip("+~")
    if not sep or key.startswith("hydra.") or key == "hydra":
        return None
    return key, value


def _get(tree: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def resume_config(
    stored: dict[str, Any],
    cfg: DictConfig,
    overrides: Sequence[str],
    resumable: Sequence[str] = RESUMABLE,
) -> DictConfig:
    """The stored config, with the ``resumable`` keys (default :data:`RESUMABLE`, whose last
    is ``resume``) that this command line overrides taken from ``cfg``. Any other override
    must agree with the stored value, or it is refused naming it. (A changed ``train.steps``
    also moves the end of the learning-rate decay.)"""
    current = OmegaConf.to_container(cfg, resolve=True)
    changed = []
    for override in overrides:
        parsed = _key(override)
        if parsed is None:
            continue
        key, value = parsed
        if key in resumable:
            changed.append(key)
            continue
        now, then = _get(current, key), _get(stored, key)
        if now != then:
            raise UsageError(
                f"resume: {key}={value} conflicts with the run's stored config "
                f"({key}: {then!r}); on resume only {', '.join(resumable[:-1])} may change"
            )
    merged = OmegaConf.create(stored)
    for key in [*changed, "resume"]:
        OmegaConf.update(merged, key, OmegaConf.select(cfg, key), force_add=True)
    return merged


def resume_record(argv: list[str]) -> list[str]:
    """On resume, Hydra's record of this invocation (config, overrides) goes to
    ``.hydra/resume-<time>/``: the run's own ``.hydra/`` keeps describing how it began."""
    words = {a.partition("=")[0].lstrip("+"): a.partition("=")[2] for a in argv}
    if str(words.get("resume", "")).lower() not in ("true", "yes", "on", "1"):
        return []
    if "hydra.output_subdir" in words:
        return []
    return [f"hydra.output_subdir=.hydra/resume-{time.strftime('%Y%m%d-%H%M%S')}"]


def restore_or_refuse(
    trainer: Any, resumed: tuple[Path, dict] | None, checkpoints: CheckpointManager
) -> None:
    """Load the resumed state into ``trainer`` (a state that does not fit is a one-line
    :class:`CheckpointError`), or refuse a fresh run into a directory that holds checkpoints."""
    if resumed is not None:
        try:
            trainer.load_state_dict(resumed[1])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(
                f"checkpoint {str(resumed[0])!r} does not fit this run: {err}".splitlines()[0]
            ) from err
        log.info("resuming from %s (step %d)", resumed[0], trainer.step)
    elif checkpoints.latest() is not None:
        raise UsageError(
            f"{checkpoints.directory} already holds checkpoints: pass resume=true to continue, "
            "or choose another hydra.run.dir"
        )
