"""Where the package keeps what it computes once and reuses (tuned grids, encoded latents)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(kind: str) -> Path:
    """``$SDE_DIFFUSION_CACHE/<kind>``, else ``$XDG_CACHE_HOME/sde-diffusion/<kind>``, else
    ``~/.cache/sde-diffusion/<kind>`` (the XDG base-directory convention)."""
    root = os.environ.get("SDE_DIFFUSION_CACHE")
    if root:
        return Path(root) / kind
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "sde-diffusion" / kind
