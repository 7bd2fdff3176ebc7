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
from mloop.data.profile import profile_frame
from mloop.data.readers import read_file
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
)

__all__ = [
    "BetweenCheck",
    "CheckResult",
    "ColumnTypeCheck",
    "Dataset",
    "DatasetService",
    "DatasetVersion",
    "InSetCheck",
    "NotNullCheck",
    "QuarantineResult",
    "RowCountCheck",
    "Suite",
    "UniqueCheck",
    "ValidationReport",
    "ValidationService",
    "check_name",
    "content_hash",
    "infer_suite",
    "logical_type",
    "parse_ref",
    "profile_frame",
    "read_file",
    "schema_of",
    "to_arrow",
]
