"""Plotting functions: one-axes functions return the axes they drew on (a new figure if none is given),
multi-panel functions return the Figure, animate_paths returns a FuncAnimation."""

from .animation import animate_paths
from .comparison import quality_vs_nfe, quality_vs_time
from .density import density_heatmap, empirical_density, marginal_heatmaps
from .fields import score_field, score_fields
from .images import image_grid, image_grids, tile_images
from .paths import sample_paths, sde_vs_ode_paths
from .samples import samples_1d, samples_2d
from .training import loss_curve

__all__ = [
    "animate_paths",
    "density_heatmap",
    "empirical_density",
    "image_grid",
    "image_grids",
    "loss_curve",
    "marginal_heatmaps",
    "quality_vs_nfe",
    "quality_vs_time",
    "sample_paths",
    "samples_1d",
    "samples_2d",
    "score_field",
    "score_fields",
    "sde_vs_ode_paths",
    "tile_images",
]
