"""The feature store: entities, feature views (versioned definitions over datasets) and
point-in-time training sets."""

from mloop.features.definitions import Entity, Feature, FeatureView, parse_ttl
from mloop.features.service import FeatureService, TrainingSet, parse_view_ref

__all__ = [
    "Entity",
    "Feature",
    "FeatureService",
    "FeatureView",
    "TrainingSet",
    "parse_ttl",
    "parse_view_ref",
]
