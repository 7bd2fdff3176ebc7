"""The feature store: entities, feature views (versioned definitions over datasets, with
transformations and streams), on-demand views, point-in-time training sets, and the online store
they are materialized into."""

from mloop.features.definitions import (
    Entity,
    Feature,
    FeatureTransform,
    FeatureView,
    OnDemandFeatureView,
    parse_ttl,
)
from mloop.features.online import (
    Codec,
    OnlineStore,
    RedisOnlineStore,
    SQLiteOnlineStore,
    open_online_store,
)
from mloop.features.service import (
    FeatureService,
    Materialization,
    OnlineResult,
    SkewReport,
    TrainingSet,
    parse_view_ref,
)

__all__ = [
    "Codec",
    "Entity",
    "Feature",
    "FeatureService",
    "FeatureTransform",
    "FeatureView",
    "Materialization",
    "OnDemandFeatureView",
    "OnlineResult",
    "OnlineStore",
    "RedisOnlineStore",
    "SQLiteOnlineStore",
    "SkewReport",
    "TrainingSet",
    "open_online_store",
    "parse_ttl",
    "parse_view_ref",
]
