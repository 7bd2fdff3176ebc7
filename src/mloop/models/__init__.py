"""Model flavors, signatures and packages."""

from mloop.models.package import (
    FLAVOR_SKLEARN,
    META_FILE,
    MLMODEL_FILE,
    MODEL_FILE,
    PICKLE_FILE,
    LoadedModel,
    ModelMeta,
    captured_dependencies,
    load_package,
    store_package,
    write_sklearn_package,
)
from mloop.models.signature import (
    FEATURE_TYPES,
    Signature,
    Task,
    frame_from_rows,
    frame_from_table,
    infer_signature,
)

__all__ = [
    "FEATURE_TYPES",
    "FLAVOR_SKLEARN",
    "META_FILE",
    "MLMODEL_FILE",
    "MODEL_FILE",
    "PICKLE_FILE",
    "LoadedModel",
    "ModelMeta",
    "Signature",
    "Task",
    "captured_dependencies",
    "frame_from_rows",
    "frame_from_table",
    "infer_signature",
    "load_package",
    "store_package",
    "write_sklearn_package",
]
