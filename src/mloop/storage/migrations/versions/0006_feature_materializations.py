"""Feature store: materialization runs into the online store, and training-set specs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.String(32)
NAME = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "feature_materializations",
        sa.Column("id", ID, primary_key=True),
        sa.Column("view", NAME, nullable=False),
        sa.Column("view_version", sa.Integer, nullable=False),
        sa.Column("layout", sa.String(32), nullable=False),
        sa.Column("store", sa.String(512), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("start_ts", sa.BigInteger, nullable=True),
        sa.Column("end_ts", sa.BigInteger, nullable=True),
        sa.Column("source_version_id", ID, nullable=True),
        sa.Column("rows_read", sa.BigInteger, nullable=False),
        sa.Column("entities_written", sa.BigInteger, nullable=False),
        sa.Column("max_event_ts", sa.BigInteger, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("created_by", NAME, nullable=True),
    )
    op.create_index(
        "ix_feature_materializations_view",
        "feature_materializations",
        ["view", "layout", "store", "started_at"],
    )
    op.create_table(
        "training_sets",
        sa.Column("version_id", ID, primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("training_sets")
    op.drop_index("ix_feature_materializations_view", "feature_materializations")
    op.drop_table("feature_materializations")
