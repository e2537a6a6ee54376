"""Plotting functions: each returns the axes it drew on (a new figure if none is given)."""

from .comparison import quality_vs_nfe, quality_vs_time
from .samples import samples_1d, samples_2d

__all__ = ["quality_vs_nfe", "quality_vs_time", "samples_1d", "samples_2d"]
