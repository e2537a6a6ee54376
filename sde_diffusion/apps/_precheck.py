"""The command line, checked before Hydra composes: group choices, unknown keys, the run folder.

Hydra reports an unknown key or an unwritable output folder in several lines (or a
traceback); these checks refuse them first, in one line that names the key or the folder.
"""

from __future__ import annotations

import difflib
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import HydraException

from ._common import UsageError, precheck_choices
from ._config import group_options


def precheck(
    argv: list[str], config_name: str, groups: tuple[str, ...], doc: str | None = None
) -> None:
    """Refuse, in one line and with exit status 2, what Hydra would refuse in many; with
    ``--help`` (and the app's docstring ``doc``), print the app's own help and exit 0."""
    if doc is not None and any(a in ("--help", "-h") for a in argv):
        from ._help import help_text

        app = "sde-" + config_name.removesuffix(".yaml").replace("_", "-")
        print(help_text(app, doc, config_name, groups))
        sys.exit(0)
    try:
        precheck_choices(argv, {g: group_options(g) for g in groups})
        overrides = _parse(argv)
        primary = _load(config_name)
        check_keys(overrides, primary)
        multirun = any(a in ("-m", "--multirun") for a in argv)
        check_output_dir(overrides, primary, multirun)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _parse(argv: list[str]) -> list[Override]:
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        return OverridesParser.create().parse_overrides(args)
    except HydraException as err:
        raise UsageError(str(err).splitlines()[0]) from err


def _load(name: str) -> dict[str, Any]:
    text = (resources.files("sde_diffusion.conf") / name).read_text()
    return yaml.safe_load(text) or {}


def _group_node(group: str, name: str) -> dict[str, Any]:
    """``conf/<group>/<name>.yaml`` with the configs it includes ``@_here_`` merged below it
    (``train_data=gaussian_mixture`` takes the keys of ``data/gaussian_mixture``)."""
    node = _load(f"{group}/{name}.yaml")
    merged: dict[str, Any] = {}
    for entry in node.get("defaults", []):
        if isinstance(entry, str) and entry.endswith("@_here_") and entry.startswith("/"):
            merged.update(_load(entry[1:].removesuffix("@_here_") + ".yaml"))
    return {**merged, **node}


def _defaults(primary: dict[str, Any]) -> dict[str, str]:
    """``{group: default choice}`` from the primary config's defaults list."""
    out = {}
    for entry in primary.get("defaults", []):
        if isinstance(entry, dict):
            for group, choice in entry.items():
                if "/" not in group and not group.startswith("override "):
                    out[group] = str(choice)
    return out


def check_keys(overrides: list[Override], primary: dict[str, Any]) -> None:
    """Refuse ``key=value`` and ``~key`` where ``key`` is in no config that will be composed.

    ``+key=value`` (append) and ``++key=value`` stay Hydra's: they may add new keys. The keys
    of a group (``solver.snr``) are those of every config chosen for it, sweeps included.
    """
    defaults = _defaults(primary)
    choices: dict[str, list[str]] = {g: [c] for g, c in defaults.items()}
    added: list[str] = []
    for o in overrides:
        if o.type == OverrideType.CHANGE and o.key_or_group in defaults:
            choices[o.key_or_group] = _values(o)
        elif o.type in (OverrideType.ADD, OverrideType.FORCE_ADD):
            added.append(o.key_or_group)
    top = {k: v for k, v in primary.items() if k not in ("defaults", "hydra")}
    for o in overrides:
        key = o.key_or_group
        if o.type not in (OverrideType.CHANGE, OverrideType.DEL) or o.package is not None:
            continue
        if key == "hydra" or key.startswith("hydra.") or "/" in key or key in defaults:
            continue
        if any(key == a or key.startswith(a + ".") for a in added):
            continue
        parts = key.split(".")
        if parts[0] in defaults:
            for name in choices[parts[0]]:
                node = _group_node(parts[0], name)
                _walk(node, parts[1:], key, parts[0], f" of {parts[0]}={name}")
        else:
            _walk({**top, **{g: {} for g in defaults}}, parts, key, "", "")


def _values(o: Override) -> list[str]:
    if o.is_sweep_override():
        return [str(v) for v in o.sweep_string_iterator()]
    return [str(o.get_value_element_as_str())]


def _walk(node: Any, parts: list[str], key: str, prefix: str, where: str) -> None:
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return  # a list, a scalar or null below: Hydra's own checks apply
        if part not in node:
            path = ".".join([prefix, *parts[:i]] if prefix else parts[:i])
            options = [f"{path}.{k}" if path else str(k) for k in node if k != "defaults"]
            close = difflib.get_close_matches(key, options, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else _listing(options)
            raise UsageError(f"{key} is not an option{where}; {hint} (+{key}=... adds a new key)")
        node = node[part]


def _listing(options: list[str]) -> str:
    shown = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
    return f"options: {shown}" if options else "it takes no options"


def check_output_dir(overrides: list[Override], primary: dict[str, Any], multirun: bool) -> None:
    """Refuse an output folder (``hydra.run.dir``, or ``hydra.sweep.dir`` in a multirun) that
    cannot be created or written, before Hydra creates it."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    value = primary.get("hydra", {}).get(key.split(".")[1], {}).get("dir")
    for o in overrides:
        if o.key_or_group == key and o.type != OverrideType.DEL and not o.is_sweep_override():
            value = o.get_value_element_as_str()
    if not value:
        return
    folder = Path(str(value).split("${", 1)[0] or ".")  # the fixed part of a dated folder
    ancestor = folder.absolute()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{key}={value} cannot be created: {ancestor} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as err:
        reason = (err.strerror or type(err).__name__).lower()
        raise UsageError(f"{key}={value} cannot be written: {reason} ({ancestor})") from err
    if not multirun and "${" not in str(value):  # refused before Hydra rewrites its .hydra/
        from ._rundir import check_unlocked

        check_unlocked(folder)
