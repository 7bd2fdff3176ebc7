"""The only package that knows backends: the metadata database and the artifact store."""

from mloop.storage import tables
from mloop.storage.artifacts import ArtifactStore, LocalArtifactStore, safe_name
from mloop.storage.db import HEAD_REVISION, Database, create_engine, memory_sqlite
from mloop.storage.lineage import Edge, LineageStore, Node

__all__ = [
    "HEAD_REVISION",
    "ArtifactStore",
    "Database",
    "Edge",
    "LineageStore",
    "LocalArtifactStore",
    "Node",
    "create_engine",
    "memory_sqlite",
    "safe_name",
    "tables",
]
