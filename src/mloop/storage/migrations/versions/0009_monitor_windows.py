"""Monitoring: per-window summaries of served traffic.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.String(32)
NAME = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "monitor_windows",
        sa.Column("id", ID, primary_key=True),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("width_ms", sa.BigInteger, nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("last_prediction_id", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("model_name", "model_version", "width_ms", "start_ms"),
    )


def downgrade() -> None:
    op.drop_table("monitor_windows")
