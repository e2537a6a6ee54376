"""Forward SDEs: VP, sub-VP and VE (Song et al., 2021)."""

from .base import SDE
from .subvp import SubVPSDE
from .ve import VESDE
from .vp import VPSDE

__all__ = ["SDE", "SubVPSDE", "VESDE", "VPSDE"]
