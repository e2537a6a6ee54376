"""Rebuild the objects a stored config describes, from an allow-list: never Hydra's ``instantiate``.

A checkpoint records the config it was trained with (``sde``, ``model``, ...). That text comes
from a file, so it is data: a ``_target_`` in it is looked up in a fixed table of the project's
own classes, and its keyword arguments must be plain values (numbers, strings, booleans, null,
lists and mappings of these, or nested allowed nodes). Anything else is refused in one line
before anything is imported or called.

The table of a config group is the set of ``_target_`` names in the package's own
``conf/<group>/*.yaml`` files (plus the time grids of :mod:`solvers.grids` for ``solver``): the
classes this project ships a config for. Code can widen it with ``extra`` (class objects, not
names), for a model class of one's own.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

import yaml

from .checkpoint import CheckpointError

__all__ = ["UnsafeConfigError", "allowed_targets", "check_plain", "rebuild"]

_PLAIN = (str, int, float, bool, type(None))
# Time grids a solver config may name besides those in conf/solver (tuned grids, for example).
_GRIDS = ("UniformGrid", "QuadraticGrid", "KarrasGrid", "LogSNRGrid", "TabulatedGrid")


class UnsafeConfigError(CheckpointError):
    """A stored config names something outside the allow-list, or holds a non-plain value."""


def _targets(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            yield node["_target_"]
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


@cache
def allowed_targets(group: str) -> frozenset[str]:
    """The ``_target_`` names of the package's ``conf/<group>/*.yaml`` (``group=""``: the
    top-level configs, where ``loss`` lives)."""
    folder = resources.files("sde_diffusion.conf")
    if group:
        folder = folder / group
    names: set[str] = set()
    for entry in folder.iterdir():
        if entry.name.endswith(".yaml"):
            names.update(_targets(yaml.safe_load(entry.read_text())))
    if group == "solver":
        names.update(f"solvers.grids.{name}" for name in _GRIDS)
    return frozenset(names)


def check_plain(node: Any, where: str) -> None:
    """Refuse anything but plain data; strings holding interpolations (``${...}``) too."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise UnsafeConfigError(f"{where}: key {key!r} is not a string")
            check_plain(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_plain(value, f"{where}[{i}]")
    elif not isinstance(node, _PLAIN):
        raise UnsafeConfigError(f"{where}: {type(node).__name__} is not plain config data")
    elif isinstance(node, str) and "${" in node:
        raise UnsafeConfigError(
            f"{where}: interpolation {node!r} is not allowed in a stored config"
        )


def _validate(node: Any, allowed: frozenset[str], extra: Mapping[str, type], where: str) -> None:
    """Every ``_target_`` allowed and no special keys, checked over the whole tree first."""
    if isinstance(node, list):
        for i, value in enumerate(node):
            _validate(value, allowed, extra, f"{where}[{i}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("_") and key != "_target_":
                raise UnsafeConfigError(f"{where}.{key}: special keys are not allowed")
            _validate(value, allowed, extra, f"{where}.{key}")
        target = node.get("_target_")
        if target is not None and not isinstance(target, str):
            raise UnsafeConfigError(f"{where}._target_: {target!r} is not a class name")
        if target is not None and target not in allowed and target not in extra:
            raise UnsafeConfigError(
                f"{where}: {target!r} is not an allowed class; allowed: "
                f"{', '.join(sorted([*allowed, *extra]))}"
            )


def check_allowed(node: Any, group: str) -> None:
    """Refuse (:class:`UnsafeConfigError`) unless ``node`` is plain data whose every
    ``_target_`` is in ``group``'s table; nothing is imported. For code that reads a stored
    config before building it (inspecting a named class's signature imports its module)."""
    where = group or "config"
    check_plain(node, where)
    _validate(node, allowed_targets(group), {}, where)


def _build(node: Any, extra: Mapping[str, type]) -> Any:
    if isinstance(node, list):
        return [_build(v, extra) for v in node]
    if not isinstance(node, dict):
        return node
    kwargs = {k: _build(v, extra) for k, v in node.items() if k != "_target_"}
    if "_target_" not in node:
        return kwargs
    target = node["_target_"]
    if target in extra:
        return extra[target](**kwargs)
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


def rebuild(node: Any, group: str, extra: Iterable[type] = (), **kwargs: Any) -> Any:
    """Build the object a stored config node describes, if every ``_target_`` in it is allowed.

    Args:
        node: plain data (``dict``/``list``/scalars), e.g. ``yaml.safe_load`` of a stored config.
        group: the config group whose table applies (``"sde"``, ``"model"``, ``"solver"``, ...).
        extra: more classes to allow, given as objects by trusted code.
        **kwargs: more keyword arguments for the top node's class, from trusted code.

    Raises:
        UnsafeConfigError: before anything is imported or called, for a name outside the table,
            a special key (``_args_``, ``_partial_``, ...) or a value that is not plain data.
    """
    where = group or "config"
    check_plain(node, where)
    more = {f"{c.__module__}.{c.__qualname__}": c for c in extra}
    _validate(node, allowed_targets(group), more, where)
    if kwargs:
        if not isinstance(node, dict) or "_target_" not in node:
            raise UnsafeConfigError(f"{where}: names no class")
        node = {**node, **kwargs}
    return _build(node, more)
