"""Guidance and class conditioning as score transforms, with exact oracles for mixtures.

``cfg_score`` and ``classifier_guided_score`` turn scores into one more ``score_fn(x, t)``;
``class_conditional`` and ``ExactClassifier`` give the exact p(x | c) and p_t(c | x) of a
labelled :class:`~sde_diffusion.GaussianMixture`.
"""

from .exact import ExactClassifier, class_conditional
from .transforms import cfg_score, classifier_guided_score

__all__ = ["ExactClassifier", "cfg_score", "class_conditional", "classifier_guided_score"]
