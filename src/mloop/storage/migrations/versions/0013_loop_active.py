"""The closed loop: at most one active pass per model, enforced by the database.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ACTIVE = "state IN ('training', 'gating', 'canary')"


def upgrade() -> None:
    op.create_index(
        "ux_loop_runs_active",
        "loop_runs",
        ["model_name"],
        unique=True,
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("ux_loop_runs_active", table_name="loop_runs")
