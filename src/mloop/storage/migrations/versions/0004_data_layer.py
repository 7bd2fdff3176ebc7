"""Data layer: versions made of shared Parquet segments, dataset policies, incremental source
state (SQL cursors, stream offsets), registered transforms and their cached runs.

Existing versions become one segment each. A dataset's content hash is no longer unique among
its versions (content equal to an older version makes a new latest version sharing its
segments): the unique constraint becomes an index.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.String(32)
NAME = sa.String(255)


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("policy", sa.JSON, nullable=True))
    with op.batch_alter_table("dataset_versions") as batch:
        batch.add_column(sa.Column("segments", sa.JSON, nullable=True))
        batch.add_column(sa.Column("base_version_id", ID, nullable=True))
        batch.create_index(
            "ix_dataset_versions_dataset_id_created_at", ["dataset_id", "created_at"]
        )
        # content equal to an older version may be a new version (sharing its segments)
        batch.drop_constraint("uq_dataset_versions_dataset_id_content_hash", type_="unique")
        batch.create_index(
            "ix_dataset_versions_dataset_id_content_hash", ["dataset_id", "content_hash"]
        )
    segments = op.create_table(
        "dataset_segments",
        sa.Column("dataset_id", ID, sa.ForeignKey("datasets.id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("data_digest", sa.String(64), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("row_count", sa.BigInteger, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "source_states",
        sa.Column("dataset_id", ID, sa.ForeignKey("datasets.id"), primary_key=True),
        sa.Column("source_key", sa.String(64), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("version_id", ID, sa.ForeignKey("dataset_versions.id"), nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "transforms",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", NAME, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("output", NAME, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", NAME, nullable=True),
        sa.UniqueConstraint("name", "version"),
        sa.UniqueConstraint("name", "code_hash"),
    )
    op.create_table(
        "transform_runs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("transform_id", ID, sa.ForeignKey("transforms.id"), nullable=False),
        sa.Column("input_key", sa.String(64), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("output_version_id", ID, sa.ForeignKey("dataset_versions.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("transform_id", "input_key"),
    )

    # every existing version becomes one segment of its dataset, numbered in version order
    conn = op.get_bind()
    versions = sa.table(
        "dataset_versions",
        sa.column("id", ID),
        sa.column("dataset_id", ID),
        sa.column("version", sa.Integer),
        sa.column("content_hash", sa.String),
        sa.column("data_digest", sa.String),
        sa.column("row_count", sa.BigInteger),
        sa.column("size_bytes", sa.BigInteger),
        sa.column("created_at", sa.BigInteger),
        sa.column("segments", sa.JSON),
    )
    rows = conn.execute(
        sa.select(versions).order_by(versions.c.dataset_id, versions.c.version)
    ).mappings()
    seq_of: dict[str, int] = {}
    for row in rows.all():
        seq = seq_of.get(row["dataset_id"], 0) + 1
        seq_of[row["dataset_id"]] = seq
        conn.execute(
            segments.insert().values(
                dataset_id=row["dataset_id"],
                seq=seq,
                data_digest=row["data_digest"],
                content_hash=row["content_hash"],
                row_count=row["row_count"],
                size_bytes=row["size_bytes"],
                created_at=row["created_at"],
            )
        )
        conn.execute(
            versions.update().where(versions.c.id == row["id"]).values(segments=[[seq, seq]])
        )


def downgrade() -> None:
    op.drop_table("transform_runs")
    op.drop_table("transforms")
    op.drop_table("source_states")
    op.drop_table("dataset_segments")
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_index("ix_dataset_versions_dataset_id_content_hash")
        batch.create_unique_constraint(
            "uq_dataset_versions_dataset_id_content_hash", ["dataset_id", "content_hash"]
        )
        batch.drop_index("ix_dataset_versions_dataset_id_created_at")
        batch.drop_column("base_version_id")
        batch.drop_column("segments")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("policy")
