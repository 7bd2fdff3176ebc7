"""Monitoring: labels that arrive after the prediction.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.String(32)
NAME = sa.String(255)
MS = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("request_id", ID, nullable=False),
        sa.Column("row_index", sa.Integer, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("prediction_ts", MS, nullable=False),
        sa.Column("received_at", MS, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.UniqueConstraint("request_id", "row_index"),
    )
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])
    op.create_index(
        "ix_feedback_model_ts", "feedback", ["model_name", "model_version", "prediction_ts"]
    )


def downgrade() -> None:
    op.drop_table("feedback")
