"""Foundations every other package stands on; imports nothing else of mloop."""

from mloop.core.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    GateFailed,
    IntegrityError,
    InvalidInput,
    MloopError,
    NotFound,
    SchemaMismatch,
    StorageError,
    Unauthorized,
    Unavailable,
)
from mloop.core.schema import Column, ColumnType, TableSchema
from mloop.core.settings import Settings

__all__ = [
    "AlreadyExists",
    "Column",
    "ColumnType",
    "Conflict",
    "Forbidden",
    "GateFailed",
    "IntegrityError",
    "InvalidInput",
    "MloopError",
    "NotFound",
    "SchemaMismatch",
    "Settings",
    "StorageError",
    "TableSchema",
    "Unauthorized",
    "Unavailable",
]
