"""The closed loop: retraining policies and the passes of the loop.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ID = sa.String(32)
NAME = sa.String(255)
MS = sa.BigInteger


def upgrade() -> None:
    # nullable: adding it rewrites nothing, however large the prediction log
    op.add_column("predictions", sa.Column("error", sa.String(64), nullable=True))
    op.create_table(
        "loop_policies",
        sa.Column("model_name", NAME, primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("updated_at", MS, nullable=False),
        sa.Column("updated_by", NAME, nullable=True),
    )
    op.create_table(
        "loop_runs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("model_name", NAME, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("champion_version", sa.Integer, nullable=True),
        sa.Column("candidate_version", sa.Integer, nullable=True),
        sa.Column("started_at", MS, nullable=False),
        sa.Column("updated_at", MS, nullable=False),
        sa.Column("ended_at", MS, nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_loop_runs_model_name", "loop_runs", ["model_name"])


def downgrade() -> None:
    op.drop_table("loop_runs")
    op.drop_table("loop_policies")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("error")
