"""Sample-quality metrics, each with a documented noise floor.

Image metrics keep features and statistics apart: an extractor (``digits_features``,
``inception_features``, any ``nn.Module``) gives features; FD takes ``FeatureStatistics`` that
record the extractor's digest; KID, precision/recall, density/coverage take features.
"""

from .classifier_score import ClassifierScore, class_histogram, classifier_score
from .digits_features import DigitsCNN, digits_features
from .exact_measures import (
    ExactMeasures,
    ExactReport,
    exact_floors,
    exact_measures,
    exact_report,
    posterior_statistics,
)
from .features import (
    FeatureStatistics,
    extract_features,
    feature_floor,
    feature_statistics,
    load_statistics,
    save_statistics,
    weights_digest,
)
from .floor import NoiseFloor, noise_floor
from .frechet import frechet_distance
from .inception import InceptionFeatures, inception_features
from .kid import KIDResult, kid
from .mmd import mmd
from .precision_recall import DensityCoverage, PrecisionRecall, density_coverage, precision_recall
from .sliced_wasserstein import sliced_wasserstein
from .total_variation import TVResult, total_variation, tv_noise_floor, tv_to_mixture

__all__ = [
    "ClassifierScore",
    "DensityCoverage",
    "DigitsCNN",
    "ExactMeasures",
    "ExactReport",
    "FeatureStatistics",
    "InceptionFeatures",
    "KIDResult",
    "NoiseFloor",
    "PrecisionRecall",
    "TVResult",
    "class_histogram",
    "classifier_score",
    "density_coverage",
    "digits_features",
    "exact_floors",
    "exact_measures",
    "exact_report",
    "extract_features",
    "feature_floor",
    "feature_statistics",
    "frechet_distance",
    "inception_features",
    "kid",
    "load_statistics",
    "mmd",
    "noise_floor",
    "posterior_statistics",
    "precision_recall",
    "save_statistics",
    "weights_digest",
    "sliced_wasserstein",
    "total_variation",
    "tv_noise_floor",
    "tv_to_mixture",
]
