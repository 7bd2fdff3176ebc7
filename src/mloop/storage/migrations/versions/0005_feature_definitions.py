"""Feature store: entity and feature view definitions, versioned.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.String(32)
NAME = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "feature_definitions",
        sa.Column("id", ID, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", NAME, nullable=True),
        sa.UniqueConstraint("kind", "name", "version"),
    )


def downgrade() -> None:
    op.drop_table("feature_definitions")
