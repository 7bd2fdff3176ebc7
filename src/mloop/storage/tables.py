"""The metadata schema, as SQLAlchemy Core tables.

Alembic migrations in ``migrations/versions`` create exactly this schema (a test compares them).
Times are integer Unix milliseconds (UTC); ids are 32-hex UUIDv7 strings.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = sa.String(32)
NAME = sa.String(255)
MS = sa.BigInteger

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", NAME, nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("created_at", MS, nullable=False),
    # revision 0004: how data is treated on the way in (PII columns: hash / mask / drop)
    sa.Column("policy", sa.JSON, nullable=True),
)

dataset_versions = sa.Table(
    "dataset_versions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("dataset_id", ID, sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("data_digest", sa.String(64), nullable=False),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("schema", sa.JSON, nullable=False),
    sa.Column("profile", sa.JSON, nullable=False),
    sa.Column("source", sa.Text, nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("created_at", MS, nullable=False),
    sa.Column("created_by", NAME, nullable=True),
    # revision 0004: a version is a list of the dataset's Parquet segments, as [first, last]
    # ranges of segment numbers; an append shares every segment of the version it extends
    sa.Column("segments", sa.JSON, nullable=True),
    sa.Column("base_version_id", ID, nullable=True),
    sa.UniqueConstraint("dataset_id", "version"),
    # revision 0004: not unique; content equal to an older version makes a new latest version
    # sharing that version's segments
    sa.Index(None, "dataset_id", "content_hash"),
    sa.Index(None, "dataset_id", "created_at"),
)

expectation_suites = sa.Table(
    "expectation_suites",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", NAME, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("inferred_from", ID, sa.ForeignKey("dataset_versions.id"), nullable=True),
    sa.Column("created_at", MS, nullable=False),
    sa.UniqueConstraint("name", "version"),
)

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", NAME, nullable=False, unique=True),
    sa.Column("lifecycle_stage", sa.String(16), nullable=False),
    sa.Column("created_at", MS, nullable=False),
    sa.Column("updated_at", MS, nullable=True),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), nullable=False),
    sa.Column("name", NAME, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("start_time", MS, nullable=False),
    sa.Column("end_time", MS, nullable=True),
    sa.Column("user", NAME, nullable=True),
    sa.Column("lifecycle_stage", sa.String(16), nullable=False),
    sa.Column("parent_run_id", ID, nullable=True, index=True),
    sa.Column("deleted_time", MS, nullable=True),
    sa.Index(None, "experiment_id", "start_time"),
)

params = sa.Table(
    "params",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", NAME, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("key", NAME, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("timestamp", MS, nullable=False),
    sa.Column("is_nan", sa.Boolean, nullable=False, server_default=sa.false()),
    # MLflow's identity of a metric value: logging the same one twice stores it once, so a client
    # that retries a batch it is unsure about cannot double it. Its column order also serves the
    # history query (run, key, by step), so it is the only index the table needs.
    sa.UniqueConstraint("run_id", "key", "step", "timestamp", "value", "is_nan"),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", NAME, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

run_artifacts = sa.Table(
    "run_artifacts",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
)

registered_models = sa.Table(
    "registered_models",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", NAME, nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("created_at", MS, nullable=False),
    sa.Column("updated_at", MS, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False, server_default="{}"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("model_id", ID, sa.ForeignKey("registered_models.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), nullable=True),
    sa.Column("flavor", sa.String(64), nullable=False),
    sa.Column("manifest_digest", sa.String(64), nullable=False),
    sa.Column("signature", sa.JSON, nullable=False),
    sa.Column("info", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("created_at", MS, nullable=False),
    sa.Column("created_by", NAME, nullable=True),
    sa.Column("source", sa.Text, nullable=True),
    sa.Column("logged_model_id", sa.String(64), nullable=True),
    sa.Column("tags", sa.JSON, nullable=False, server_default="{}"),
    sa.UniqueConstraint("model_id", "version"),
)

model_aliases = sa.Table(
    "model_aliases",
    metadata,
    sa.Column("model_id", ID, sa.ForeignKey("registered_models.id"), primary_key=True),
    sa.Column("alias", NAME, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", MS, nullable=False),
)

lineage_edges = sa.Table(
    "lineage_edges",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("src_type", sa.String(32), nullable=False),
    sa.Column("src_id", sa.String(1024), nullable=False),
    sa.Column("dst_type", sa.String(32), nullable=False),
    sa.Column("dst_id", sa.String(1024), nullable=False),
    sa.Column("relation", sa.String(32), nullable=False),
    sa.Column("created_at", MS, nullable=False),
    sa.UniqueConstraint("src_type", "src_id", "dst_type", "dst_id", "relation"),
    sa.Index(None, "dst_type", "dst_id"),
)

# -- revision 0002 ---------------------------------------------------------------------------

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("ts", MS, nullable=False, index=True),
    sa.Column("actor", NAME, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object_type", sa.String(32), nullable=False),
    sa.Column("object_id", sa.String(1024), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("request_id", ID, nullable=False, index=True),
    sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("model_name", NAME, nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("ts", MS, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("outputs", sa.Text, nullable=False),
    sa.Column("deployment", NAME, nullable=True),  # revision 0008: served through a deployment
    sa.Column("variant", NAME, nullable=True),  # ... by this variant of it
    sa.Column("shadow", sa.Boolean, nullable=True),  # ... as a shadow: never returned
    # revision 0012: the code of a request the variant failed (its row has no prediction)
    sa.Column("error", sa.String(64), nullable=True),
    sa.Index(None, "model_name", "ts"),
)

# rows of the prediction log that a client was answered with, or failed on: not a shadow's
# copy (null on rows logged before revision 0008) ...
NOT_SHADOW = sa.or_(predictions.c.shadow.is_(None), predictions.c.shadow.is_(False))
# ... and of those, the ones that hold a prediction
ANSWERED = sa.and_(NOT_SHADOW, predictions.c.error.is_(None))

# -- revision 0003 ---------------------------------------------------------------------------

latest_metrics = sa.Table(
    "latest_metrics",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("key", NAME, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("timestamp", MS, nullable=False),
    sa.Column("is_nan", sa.Boolean, nullable=False, server_default=sa.false()),
    # a search ordered by a metric walks this index (MLflow orders NaN above every number)
    sa.Index(None, "key", "is_nan", "value"),
)

experiment_tags = sa.Table(
    "experiment_tags",
    metadata,
    sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), primary_key=True),
    sa.Column("key", NAME, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

run_inputs = sa.Table(
    "run_inputs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("name", NAME, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("context", sa.String(64), nullable=False),
    sa.Column("source_type", sa.String(64), nullable=True),
    sa.Column("source", sa.Text, nullable=True),
    sa.Column("schema", sa.Text, nullable=True),
    sa.Column("profile", sa.Text, nullable=True),
    sa.Column("created_at", MS, nullable=False),
    sa.UniqueConstraint("run_id", "name", "digest", "context"),
)

logged_models = sa.Table(
    "logged_models",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("experiment_id", ID, sa.ForeignKey("experiments.id"), nullable=False, index=True),
    sa.Column("name", NAME, nullable=False),
    sa.Column("source_run_id", ID, sa.ForeignKey("runs.id"), nullable=True, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_message", sa.Text, nullable=True),
    sa.Column("model_type", NAME, nullable=True),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("lifecycle_stage", sa.String(16), nullable=False),
    sa.Column("created_at", MS, nullable=False),
    sa.Column("updated_at", MS, nullable=False),
)

logged_model_artifacts = sa.Table(
    "logged_model_artifacts",
    metadata,
    sa.Column("model_id", sa.String(64), sa.ForeignKey("logged_models.id"), primary_key=True),
    sa.Column("path", sa.String(1024), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
)

tracking_batches = sa.Table(
    "tracking_batches",
    metadata,
    # ids of the batches applied, so that a client resending one (it never saw the answer)
    # gets an acknowledgement instead of a second application; pruned after a week
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("applied_at", MS, nullable=False, index=True),
)

run_outputs = sa.Table(
    "run_outputs",
    metadata,
    sa.Column("run_id", ID, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("model_id", sa.String(64), sa.ForeignKey("logged_models.id"), primary_key=True),
    sa.Column("step", sa.BigInteger, nullable=False, server_default="0"),
)

# -- revision 0004 ---------------------------------------------------------------------------

dataset_segments = sa.Table(
    "dataset_segments",
    metadata,
    sa.Column("dataset_id", ID, sa.ForeignKey("datasets.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data_digest", sa.String(64), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", MS, nullable=False),
)

# where an incremental source (a SQL cursor, a stream's offsets) stands for one dataset; written
# in the transaction that writes the version holding the data read up to there
source_states = sa.Table(
    "source_states",
    metadata,
    sa.Column("dataset_id", ID, sa.ForeignKey("datasets.id"), primary_key=True),
    sa.Column("source_key", sa.String(64), primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("version_id", ID, sa.ForeignKey("dataset_versions.id"), nullable=True),
    sa.Column("updated_at", MS, nullable=False),
)

transforms = sa.Table(
    "transforms",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", NAME, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("output", NAME, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("created_at", MS, nullable=False),
    sa.Column("created_by", NAME, nullable=True),
    sa.UniqueConstraint("name", "version"),
    sa.UniqueConstraint("name", "code_hash"),
)

transform_runs = sa.Table(
    "transform_runs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("transform_id", ID, sa.ForeignKey("transforms.id"), nullable=False),
    sa.Column("input_key", sa.String(64), nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("output_version_id", ID, sa.ForeignKey("dataset_versions.id"), nullable=False),
    sa.Column("created_at", MS, nullable=False),
    sa.UniqueConstraint("transform_id", "input_key"),
)

# revision 0005: feature store definitions (entities and feature views), one row per version
feature_definitions = sa.Table(
    "feature_definitions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", NAME, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("spec_hash", sa.String(64), nullable=False),
    sa.Column("created_at", MS, nullable=False),
    sa.Column("created_by", NAME, nullable=True),
    sa.UniqueConstraint("kind", "name", "version"),
)

# one materialization of a feature view into the online store
feature_materializations = sa.Table(
    "feature_materializations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("view", NAME, nullable=False),
    sa.Column("view_version", sa.Integer, nullable=False),
    sa.Column("layout", sa.String(32), nullable=False),
    sa.Column("store", sa.String(512), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),  # range | incremental | stream
    sa.Column("start_ts", MS, nullable=True),  # event-time window, ms
    sa.Column("end_ts", MS, nullable=True),
    sa.Column("source_version_id", ID, nullable=True),
    sa.Column("rows_read", sa.BigInteger, nullable=False, default=0),
    sa.Column("entities_written", sa.BigInteger, nullable=False, default=0),
    sa.Column("max_event_ts", MS, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # running | succeeded | failed
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started_at", MS, nullable=False),
    sa.Column("finished_at", MS, nullable=True),
    sa.Column("created_by", NAME, nullable=True),
    sa.Index("ix_feature_materializations_view", "view", "layout", "store", "started_at"),
)

# what a training set was built from: its feature references, keys and time column
training_sets = sa.Table(
    "training_sets",
    metadata,
    sa.Column("version_id", ID, primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("created_at", MS, nullable=False),
)

# -- revision 0007 ---------------------------------------------------------------------------

# per registered model: the gates a version must pass to take the alias, on which dataset
promotion_policies = sa.Table(
    "promotion_policies",
    metadata,
    sa.Column("model_id", ID, sa.ForeignKey("registered_models.id"), primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("updated_at", MS, nullable=False),
    sa.Column("updated_by", NAME, nullable=True),
)

# every move of an alias, in order: what rollback walks back through
model_alias_history = sa.Table(
    "model_alias_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("model_id", ID, sa.ForeignKey("registered_models.id"), nullable=False),
    sa.Column("alias", NAME, nullable=False),
    sa.Column("version", sa.Integer, nullable=True),  # null: the alias was removed
    sa.Column("previous", sa.Integer, nullable=True),
    sa.Column("action", sa.String(16), nullable=False),  # set | promote | rollback | delete
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("created_at", MS, nullable=False),
    sa.Column("created_by", NAME, nullable=True),
    sa.Index("ix_model_alias_history_alias", "model_id", "alias", "id"),
)

# a model version's results on a dataset version (metrics, slices, fairness, latency)
model_evaluations = sa.Table(
    "model_evaluations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("model_version_id", ID, sa.ForeignKey("model_versions.id"), nullable=False),
    sa.Column("dataset_version_id", ID, nullable=False),
    sa.Column("spec_hash", sa.String(64), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("created_at", MS, nullable=False),
    sa.Column("created_by", NAME, nullable=True),
    sa.Index("ix_model_evaluations_version", "model_version_id", "dataset_version_id", "spec_hash"),
)

# -- revision 0008 ---------------------------------------------------------------------------

# what a server serves under a name: variants (model references), strategy, batching
deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", NAME, nullable=False, unique=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),  # bumped by every change: servers poll it
    sa.Column("created_at", MS, nullable=False),
    sa.Column("created_by", NAME, nullable=True),
    sa.Column("updated_at", MS, nullable=False),
    sa.Column("updated_by", NAME, nullable=True),
)

# -- revision 0009 ---------------------------------------------------------------------------

# a model version's served inputs, summarised per tumbling window of the prediction log
# (mloop.monitoring.summary): updated incrementally, merged into sliding windows, compared
monitor_windows = sa.Table(
    "monitor_windows",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("model_name", NAME, nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("width_ms", sa.BigInteger, nullable=False),
    sa.Column("start_ms", MS, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),  # JSON: Summary.to_dict()
    sa.Column("last_prediction_id", sa.BigInteger, nullable=False),  # the newest folded in
    sa.Column("updated_at", MS, nullable=False),
    sa.UniqueConstraint("model_name", "model_version", "width_ms", "start_ms"),
)

# -- revision 0010 ---------------------------------------------------------------------------

# labels that arrive after the prediction (POST /v1/feedback, a file, a stream), joined to the
# prediction log by (request_id, row_index); a label sent again replaces the earlier one
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("request_id", ID, nullable=False),
    sa.Column("row_index", sa.Integer, nullable=False),
    sa.Column("label", sa.Text, nullable=False),  # JSON: the true value
    sa.Column("model_name", NAME, nullable=False),  # of the prediction it labels
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("prediction_ts", MS, nullable=False),  # when that prediction was made
    sa.Column("received_at", MS, nullable=False, index=True),
    sa.Column("source", sa.String(32), nullable=False),  # api, file, stream
    sa.UniqueConstraint("request_id", "row_index"),
    sa.Index("ix_feedback_model_ts", "model_name", "model_version", "prediction_ts"),
)

# -- revision 0011 ---------------------------------------------------------------------------

# alert rules over monitored series, their current state, and every transition
alert_rules = sa.Table(
    "alert_rules",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", NAME, nullable=False, unique=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # ok, pending, firing
    sa.Column("state_since", MS, nullable=True),
    sa.Column("last_value", sa.Float, nullable=True),
    sa.Column("last_notified_at", MS, nullable=True),
    sa.Column("last_evaluated_at", MS, nullable=True),
    sa.Column("created_at", MS, nullable=False),
    sa.Column("updated_at", MS, nullable=False),
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("rule_name", NAME, nullable=False),
    sa.Column("ts", MS, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # pending, firing, resolved, notified
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_alert_events_rule_ts", "rule_name", "ts"),
)

# -- revision 0012 ---------------------------------------------------------------------------

# the closed loop: a retraining policy per registered model, and each pass of the loop
LOOP_ACTIVE = "state IN ('training', 'gating', 'canary')"  # a pass still under way
loop_policies = sa.Table(
    "loop_policies",
    metadata,
    sa.Column("model_name", NAME, primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_at", MS, nullable=False),
    sa.Column("updated_by", NAME, nullable=True),
)

loop_runs = sa.Table(
    "loop_runs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("model_name", NAME, nullable=False, index=True),
    # triggered, training, gating, canary, promoted, rolled_back, failed, refused
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("trigger", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("champion_version", sa.Integer, nullable=True),
    sa.Column("candidate_version", sa.Integer, nullable=True),
    sa.Column("started_at", MS, nullable=False),
    sa.Column("updated_at", MS, nullable=False),
    sa.Column("ended_at", MS, nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
    # revision 0013: one active pass per model, even with two controllers claiming at once
    sa.Index(
        "ux_loop_runs_active",
        "model_name",
        unique=True,
        sqlite_where=sa.text(LOOP_ACTIVE),
        postgresql_where=sa.text(LOOP_ACTIVE),
    ),
)
