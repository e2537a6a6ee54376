"""Guidance and class conditioning as score transforms, with exact oracles for mixtures.

``cfg_score`` and ``classifier_guided_score`` turn scores into one more ``score_fn(x, t)``;
``class_conditional`` and ``ExactClassifier`` give the exact p(x | c) and p_t(c | x) of a
labelled :class:`~sde_diffusion.GaussianMixture`; ``NoiseClassifier`` is the trained p_t(c | x);
``tilted_density`` the density p(x|c)^(1+w) p(x)^(-w) that CFG is said to sample, on a grid.
"""

from .classifier import ClassifierLoss, NoiseClassifier, load_classifier
from .exact import ExactClassifier, class_conditional
from .labels import bind_label, drop_labels
from .tilted import GridDensity, cfg_against_exact, tilted_density
from .transforms import cfg_score, classifier_guided_score

__all__ = [
    "ClassifierLoss",
    "ExactClassifier",
    "GridDensity",
    "NoiseClassifier",
    "bind_label",
    "cfg_against_exact",
    "cfg_score",
    "class_conditional",
    "classifier_guided_score",
    "drop_labels",
    "load_classifier",
    "tilted_density",
]
