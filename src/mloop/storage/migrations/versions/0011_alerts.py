"""Monitoring: alert rules and their history.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.String(32)
NAME = sa.String(255)
MS = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", NAME, nullable=False, unique=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_since", MS, nullable=True),
        sa.Column("last_value", sa.Float, nullable=True),
        sa.Column("last_notified_at", MS, nullable=True),
        sa.Column("last_evaluated_at", MS, nullable=True),
        sa.Column("created_at", MS, nullable=False),
        sa.Column("updated_at", MS, nullable=False),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", ID, primary_key=True),
        sa.Column("rule_name", NAME, nullable=False),
        sa.Column("ts", MS, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_alert_events_rule_ts", "alert_events", ["rule_name", "ts"])


def downgrade() -> None:
    op.drop_table("alert_events")
    op.drop_table("alert_rules")
