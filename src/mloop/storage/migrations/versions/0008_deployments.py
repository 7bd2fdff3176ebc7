"""Serving: deployments, and which deployment and variant served each prediction.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.String(32)
NAME = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", NAME, nullable=False, unique=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", NAME, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("updated_by", NAME, nullable=True),
    )
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("deployment", NAME, nullable=True))
        batch.add_column(sa.Column("variant", NAME, nullable=True))
        batch.add_column(sa.Column("shadow", sa.Boolean, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("shadow")
        batch.drop_column("variant")
        batch.drop_column("deployment")
    op.drop_table("deployments")
