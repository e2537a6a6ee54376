"""``--help`` of each app: what it does, its own config groups (with their options) and its
keys with their defaults and comments, read from the packaged YAML so it cannot go stale.
(Hydra's generic help listed every group of the search path, including ones the app ignores.)"""

from __future__ import annotations

import textwrap
from importlib import resources

from ._config import group_options

__all__ = ["help_text"]


def _keys(config_name: str) -> list[str]:
    """The top-level lines of the app's YAML, less ``defaults`` and ``hydra``, comments kept."""
    lines, skip = [], False
    for line in (resources.files("sde_diffusion.conf") / config_name).read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            skip = line.startswith(("defaults:", "hydra:"))
        if not skip and line.strip() and not line.startswith("#"):
            lines.append(line)
    return lines


def _defaults(config_name: str) -> dict[str, str]:
    import yaml

    text = (resources.files("sde_diffusion.conf") / config_name).read_text()
    out = {}
    for entry in yaml.safe_load(text).get("defaults", []):
        if isinstance(entry, dict):
            out.update({str(k): str(v) for k, v in entry.items()})
    return out


def help_text(app: str, doc: str, config_name: str, groups: tuple[str, ...]) -> str:
    """The text ``APP --help`` prints."""
    defaults = _defaults(config_name)
    body = textwrap.dedent(doc).strip().replace("``", "").removeprefix(f"{app}:").strip()
    parts = [f"{app}: {body}", "", f"Usage: {app} [KEY=VALUE ...]"
             "   (Hydra overrides; -m KEY=A,B for a sweep; --cfg job shows the composed config)",
             "", "Config groups (GROUP=NAME; GROUP.KEY=VALUE sets one of its keys):"]  # fmt: skip
    for group in groups:
        options = ", ".join(group_options(group))
        parts.append(f"  {group} (default {defaults.get(group, '-')}): {options}")
    parts += ["", f"Keys (conf/{config_name}):"]
    parts += [f"  {line}" for line in _keys(config_name)]
    return "\n".join(parts)
