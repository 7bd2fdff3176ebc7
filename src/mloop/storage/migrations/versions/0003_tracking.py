"""Tracking at scale and MLflow compatibility: latest metrics, NaN flags, run lineage columns,
experiment tags, run inputs and outputs, logged models, registry tags and sources; the Default
experiment gets MLflow's id "0".

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(32)
NAME = sa.String(255)
AUTO_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("is_nan", sa.Boolean, nullable=False, server_default=sa.false()))
    # earlier versions could store one value twice: keep the first before making it unique
    op.execute(
        """
        DELETE FROM metrics WHERE id NOT IN (
            SELECT MIN(id) FROM metrics GROUP BY run_id, key, timestamp, step, value, is_nan
        )
        """
    )
    with op.batch_alter_table("metrics") as batch:
        batch.create_unique_constraint(
            "uq_metrics_run_id_key_step_timestamp_value_is_nan",
            ["run_id", "key", "step", "timestamp", "value", "is_nan"],
        )
    # the unique index leads with (run_id, key, step): it serves history queries on its own
    op.drop_index("ix_metrics_run_id_key_step", "metrics")
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_run_id", ID, nullable=True))
        batch.add_column(sa.Column("deleted_time", sa.BigInteger, nullable=True))
    op.create_index("ix_runs_parent_run_id", "runs", ["parent_run_id"])
    op.create_index("ix_runs_experiment_id_start_time", "runs", ["experiment_id", "start_time"])
    op.drop_index("ix_runs_experiment_id", "runs")  # the index above leads with experiment_id
    op.add_column("experiments", sa.Column("updated_at", sa.BigInteger, nullable=True))
    op.add_column(
        "registered_models", sa.Column("tags", sa.JSON, nullable=False, server_default="{}")
    )
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("source", sa.Text, nullable=True))
        batch.add_column(sa.Column("logged_model_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON, nullable=False, server_default="{}"))

    op.create_table(
        "latest_metrics",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("key", NAME, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("is_nan", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_latest_metrics_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_latest_metrics"),
    )
    op.create_index(
        "ix_latest_metrics_key_is_nan_value", "latest_metrics", ["key", "is_nan", "value"]
    )
    op.execute(
        """
        INSERT INTO latest_metrics (run_id, key, value, step, timestamp, is_nan)
        SELECT m.run_id, m.key, m.value, m.step, m.timestamp, m.is_nan FROM metrics m
        WHERE m.id = (
            SELECT m2.id FROM metrics m2 WHERE m2.run_id = m.run_id AND m2.key = m.key
            ORDER BY m2.step DESC, m2.timestamp DESC, m2.value DESC, m2.id DESC LIMIT 1
        )
        """
    )
    op.create_table(
        "experiment_tags",
        sa.Column("experiment_id", ID, nullable=False),
        sa.Column("key", NAME, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name="fk_experiment_tags_experiment_id_experiments",
        ),
        sa.PrimaryKeyConstraint("experiment_id", "key", name="pk_experiment_tags"),
    )
    op.create_table(
        "run_inputs",
        sa.Column("id", AUTO_ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("context", sa.String(64), nullable=False),
        sa.Column("source_type", sa.String(64), nullable=True),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("schema", sa.Text, nullable=True),
        sa.Column("profile", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_inputs_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_run_inputs"),
        sa.UniqueConstraint(
            "run_id", "name", "digest", "context", name="uq_run_inputs_run_id_name_digest_context"
        ),
    )
    op.create_index("ix_run_inputs_run_id", "run_inputs", ["run_id"])
    op.create_table(
        "logged_models",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("experiment_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("source_run_id", ID, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_message", sa.Text, nullable=True),
        sa.Column("model_type", NAME, nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("lifecycle_stage", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["experiments.id"], name="fk_logged_models_experiment_id_experiments"
        ),
        sa.ForeignKeyConstraint(
            ["source_run_id"], ["runs.id"], name="fk_logged_models_source_run_id_runs"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_logged_models"),
    )
    op.create_index("ix_logged_models_experiment_id", "logged_models", ["experiment_id"])
    op.create_index("ix_logged_models_source_run_id", "logged_models", ["source_run_id"])
    op.create_table(
        "logged_model_artifacts",
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["logged_models.id"],
            name="fk_logged_model_artifacts_model_id_logged_models",
        ),
        sa.PrimaryKeyConstraint("model_id", "path", name="pk_logged_model_artifacts"),
    )
    op.create_table(
        "run_outputs",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False, server_default="0"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_outputs_run_id_runs"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["logged_models.id"], name="fk_run_outputs_model_id_logged_models"
        ),
        sa.PrimaryKeyConstraint("run_id", "model_id", name="pk_run_outputs"),
    )
    op.create_table(
        "tracking_batches",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("applied_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tracking_batches"),
    )
    op.create_index("ix_tracking_batches_applied_at", "tracking_batches", ["applied_at"])
    _default_experiment_is_zero()


def _default_experiment_is_zero() -> None:
    """MLflow clients send experiment id "0" when none is set: make "0" the Default."""
    conn = op.get_bind()
    experiments = sa.table(
        "experiments",
        sa.column("id"),
        sa.column("name"),
        sa.column("lifecycle_stage"),
        sa.column("created_at"),
        sa.column("updated_at"),
    )
    runs = sa.table("runs", sa.column("experiment_id"))
    if conn.execute(sa.select(experiments.c.id).where(experiments.c.id == "0")).first():
        return
    now = int(time.time() * 1000)
    old = conn.execute(
        sa.select(experiments.c.id, experiments.c.created_at).where(experiments.c.name == "Default")
    ).first()
    conn.execute(
        experiments.insert().values(
            id="0",
            name="Default" if old is None else "__mloop_default_0003__",
            lifecycle_stage="active",
            created_at=now if old is None else old.created_at,
            updated_at=now,
        )
    )
    if old is not None:
        conn.execute(runs.update().where(runs.c.experiment_id == old.id).values(experiment_id="0"))
        conn.execute(experiments.delete().where(experiments.c.id == old.id))
        conn.execute(experiments.update().where(experiments.c.id == "0").values(name="Default"))


def downgrade() -> None:
    for table in (
        "tracking_batches",
        "run_outputs",
        "logged_model_artifacts",
        "logged_models",
        "run_inputs",
        "experiment_tags",
        "latest_metrics",
    ):
        op.drop_table(table)
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("tags")
        batch.drop_column("logged_model_id")
        batch.drop_column("source")
    with op.batch_alter_table("registered_models") as batch:
        batch.drop_column("tags")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_column("updated_at")
    op.create_index("ix_runs_experiment_id", "runs", ["experiment_id"])
    op.drop_index("ix_runs_experiment_id_start_time", "runs")
    op.drop_index("ix_runs_parent_run_id", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("deleted_time")
        batch.drop_column("parent_run_id")
    op.create_index("ix_metrics_run_id_key_step", "metrics", ["run_id", "key", "step"])
    with op.batch_alter_table("metrics") as batch:
        batch.drop_constraint("uq_metrics_run_id_key_step_timestamp_value_is_nan", type_="unique")
        batch.drop_column("is_nan")
