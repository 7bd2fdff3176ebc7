"""Sources, dataset versions, profiles and validation."""

from mloop.data.datasets import (
    Dataset,
    DatasetService,
    DatasetVersion,
    check_name,
    content_hash,
    parse_ref,
    to_arrow,
)
from mloop.data.policy import apply_policy
from mloop.data.profile import profile_frame
from mloop.data.readers import read_file
from mloop.data.streams import (
    LocalLog,
    StreamConsumer,
    StreamService,
    StreamStats,
    parse_stream_uri,
)
from mloop.data.transforms import (
    Transform,
    TransformRun,
    TransformService,
    parse_transform_ref,
    transform,
    transform_spec,
)
from mloop.data.types import logical_type, schema_of
from mloop.data.validation import (
    BetweenCheck,
    CheckResult,
    ColumnTypeCheck,
    InSetCheck,
    NotNullCheck,
    QuarantineResult,
    RowCountCheck,
    Suite,
    UniqueCheck,
    ValidationReport,
    ValidationService,
    infer_suite,
    split_frame,
)
from mloop.data.versioning import (
    SchemaChanged,
    SourceState,
    conform,
    merge_profiles,
    parse_instant,
    schema_changes,
)

__all__ = [
    "BetweenCheck",
    "CheckResult",
    "ColumnTypeCheck",
    "Dataset",
    "DatasetService",
    "DatasetVersion",
    "InSetCheck",
    "LocalLog",
    "NotNullCheck",
    "QuarantineResult",
    "RowCountCheck",
    "SchemaChanged",
    "SourceState",
    "StreamConsumer",
    "StreamService",
    "StreamStats",
    "Suite",
    "Transform",
    "TransformRun",
    "TransformService",
    "UniqueCheck",
    "ValidationReport",
    "ValidationService",
    "apply_policy",
    "check_name",
    "conform",
    "content_hash",
    "infer_suite",
    "logical_type",
    "merge_profiles",
    "parse_instant",
    "parse_ref",
    "parse_stream_uri",
    "parse_transform_ref",
    "profile_frame",
    "read_file",
    "schema_changes",
    "schema_of",
    "split_frame",
    "to_arrow",
    "transform",
    "transform_spec",
]
