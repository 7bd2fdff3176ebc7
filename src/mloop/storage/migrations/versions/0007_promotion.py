"""Registry: promotion policies, the history of alias moves, and stored evaluations.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.String(32)
NAME = sa.String(255)


def upgrade() -> None:
    op.create_table(
        "promotion_policies",
        sa.Column("model_id", ID, sa.ForeignKey("registered_models.id"), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("updated_by", NAME, nullable=True),
    )
    op.create_table(
        "model_alias_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("model_id", ID, sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("alias", NAME, nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("previous", sa.Integer, nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", NAME, nullable=True),
    )
    op.create_index(
        "ix_model_alias_history_alias", "model_alias_history", ["model_id", "alias", "id"]
    )
    op.create_table(
        "model_evaluations",
        sa.Column("id", ID, primary_key=True),
        sa.Column("model_version_id", ID, sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("dataset_version_id", ID, nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", NAME, nullable=True),
    )
    op.create_index(
        "ix_model_evaluations_version",
        "model_evaluations",
        ["model_version_id", "dataset_version_id", "spec_hash"],
    )


def downgrade() -> None:
    op.drop_index("ix_model_evaluations_version", "model_evaluations")
    op.drop_table("model_evaluations")
    op.drop_index("ix_model_alias_history_alias", "model_alias_history")
    op.drop_table("model_alias_history")
    op.drop_table("promotion_policies")
