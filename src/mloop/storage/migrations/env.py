"""Alembic environment: mloop runs migrations in-process on a connection it hands over."""

from __future__ import annotations

from alembic import context

from mloop.storage.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - mloop always passes a connection
    raise RuntimeError("mloop migrations run through mloop.storage.Database.upgrade()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
