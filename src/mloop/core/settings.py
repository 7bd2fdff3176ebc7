"""Settings: ``MLOOP_*`` environment variables, then ``mloop.toml`` in the working directory,
then the defaults below. Backends are chosen here, never in code."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLOOP_", toml_file="mloop.toml", extra="ignore", frozen=True
    )

    home: Path = Field(
        default=Path(".mloop"),
        description="Workspace folder: the SQLite database and the artifact store live here.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database; "
        "default sqlite:///<home>/mloop.db. Example: postgresql+psycopg://user@host/db",
    )
    artifact_root: Path | None = Field(
        default=None,
        description="Folder of the content-addressed artifact store; default <home>/artifacts.",
    )
    prediction_log_flush_seconds: float = Field(
        default=0.1, gt=0, description="The prediction logger writes a batch at least this often."
    )
    prediction_log_batch_size: int = Field(
        default=200,
        gt=0,
        description="... or as soon as this many records wait (small batches keep the writer "
        "thread's turns short: it shares the interpreter with the requests).",
    )
    prediction_log_queue_size: int = Field(
        default=200_000,
        gt=0,
        description="Records held in memory at most; beyond it records are counted as dropped.",
    )
    prediction_log_process: bool = Field(
        default=True,
        description="The server writes its prediction log through a writer process of its own "
        "(the database work off the serving interpreter); false: a thread in the server.",
    )
    alias_cache_seconds: float = Field(
        default=1.0, ge=0, description="How long the server trusts an alias lookup."
    )
    serve_max_concurrency: int = Field(
        default=512,
        gt=0,
        description="Predict requests one server worker serves at once; beyond it 503 "
        "(with Retry-After), never an unbounded queue.",
    )
    serve_max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        gt=0,
        description="The largest predict request body a server accepts (413 beyond it).",
    )
    tracking_uri: str | None = Field(
        default=None,
        description="Where the fluent API logs: an mloop server (http://host:port) or a "
        "workspace folder; default the workspace at home.",
    )
    tracking_flush_seconds: float = Field(
        default=1.0,
        gt=0,
        description="The fluent API sends buffered metrics at least this often; a SIGKILL loses "
        "at most this much logging.",
    )
    ingest_max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="The largest body POST /v1/datasets/{name}/rows accepts (413 beyond it).",
    )
    online_store: str = Field(
        default="sqlite",
        description="Where materialized features are served from: sqlite (the workspace's "
        "online.db), sqlite:///PATH, or redis://HOST:PORT/DB (pip install 'mloop[redis]').",
    )
    online_namespace: str | None = Field(
        default=None,
        description="Prefix of this workspace's keys in a shared online store (Redis); default "
        "derived from the metadata database, so workspaces never read each other's features.",
    )
    feature_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        description="How long online reads trust a feature view's definition before looking "
        "again (a change applied in this process is seen at once).",
    )
    system_metrics: bool = Field(
        default=False, description="Sample CPU, memory, disk, network (and GPU) for every run."
    )
    system_metrics_interval: float = Field(
        default=10.0, gt=0, description="Seconds between system-metric samples."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'mloop.db').resolve()}"

    def resolved_artifact_root(self) -> Path:
        return (self.artifact_root or self.home / "artifacts").resolve()
