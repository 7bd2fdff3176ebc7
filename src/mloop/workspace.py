"""The composition root: open settings and backends, hand every service its parts."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

from pydantic import ValidationError

from mloop.core.errors import InvalidInput
from mloop.core.settings import Settings
from mloop.data import DatasetService, StreamService, TransformService, ValidationService
from mloop.features import FeatureService, open_online_store
from mloop.lineage import LineageService
from mloop.loop import LoopService
from mloop.monitoring import (
    AlertService,
    MonitoringService,
    PerformanceService,
    SeriesService,
)
from mloop.registry import RegistryService
from mloop.security import AuditLog
from mloop.serving import (
    BatchPredictionService,
    DeploymentService,
    PredictionResult,
    Predictor,
)
from mloop.storage import Database, LocalArtifactStore
from mloop.tracking import LoggedModelService, TrackingService
from mloop.training import EvaluationService, PromotionService, TrainingService, TuningService


class Workspace:
    """One mloop workspace: a metadata database and an artifact store, and the services over
    them. ``Workspace.open()`` with no argument opens ``$MLOOP_HOME`` or ``./.mloop``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home.resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.resolved_database_url())
        self.db.ensure_schema()
        self.artifacts = LocalArtifactStore(settings.resolved_artifact_root())
        self.audit = AuditLog(self.db)
        # the lineage graph: services record edges through it, faces walk it by reference
        self.lineage = LineageService(self.db, self)
        self.datasets = DatasetService(self.db, self.artifacts, self.audit, self.lineage)
        self.validation = ValidationService(self.db, self.datasets, self.audit, self.lineage)
        self.transforms = TransformService(self.db, self.datasets, self.audit, self.lineage)
        self.streams = StreamService(self.datasets, self.validation, self.artifacts, self.home)
        self.features = FeatureService(
            self.db,
            self.datasets,
            self.audit,
            self.lineage,
            lambda: open_online_store(settings.online_store, self.home, self._online_namespace()),
            streams=self.streams,
            cache_seconds=settings.feature_cache_seconds,
        )
        self.tracking = TrackingService(self.db, self.artifacts, self.audit, self.lineage)
        self.logged_models = LoggedModelService(self.db, self.artifacts, self.audit)
        self.registry = RegistryService(
            self.db, self.artifacts, self.tracking, self.audit, self.lineage
        )
        self.training = TrainingService(self.datasets, self.tracking, self.registry, self.features)
        self.tuning = TuningService(self.training, self.tracking, self.db.url, self.home)
        self.evaluation = EvaluationService(self.datasets, self.registry)
        self.promotion = PromotionService(self.registry, self.evaluation)
        self.deployments = DeploymentService(self.db, self.registry, self.audit)
        self.batch = BatchPredictionService(
            self.db,
            self.datasets,
            self.deployments,
            self.registry,
            self.artifacts,
            self.audit,
            self.lineage,
        )
        self.monitoring = MonitoringService(self.db, self.datasets, self.tracking, self.registry)
        self.performance = PerformanceService(self.db, self.registry, self.tracking)
        self.series = SeriesService(
            self.db,
            self.monitoring,
            self.registry,
            performance=lambda: getattr(self, "performance", None),
        )
        self.alerts = AlertService(self.db, self.series, self.audit, deployments=self.deployments)
        self.loop = LoopService(self)
        self._predictor = Predictor(
            self.registry, None, alias_cache_seconds=0, features=self.features
        )

    @classmethod
    def open(cls, path_or_url: str | os.PathLike[str] | None = None, **overrides: Any) -> Workspace:
        """Open (creating and migrating as needed) the workspace at a folder or ``file://`` URL.

        The metadata database defaults to SQLite in that folder; ``MLOOP_DATABASE_URL`` (or
        ``database_url=``) points it at PostgreSQL instead.
        """
        if path_or_url is not None:
            text = os.fspath(path_or_url)
            parsed = urlparse(text)
            if parsed.scheme == "file":
                overrides["home"] = Path(parsed.path)
            elif "://" in text:
                raise InvalidInput(
                    f"cannot open workspace {text!r}: give a folder or a file:// URL"
                )
            else:
                overrides["home"] = Path(text)
        try:
            settings = Settings(**overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(
                f"invalid setting {where} (MLOOP_{where.upper()}): {first['msg']}"
            ) from exc
        return cls(settings)

    def _online_namespace(self) -> str:
        """Keys of this workspace in a shared online store: the setting, or a digest of the
        metadata database's URL (the same database, the same features)."""
        if self.settings.online_namespace:
            return self.settings.online_namespace
        digest = hashlib.sha256(str(self.db.engine.url).encode()).hexdigest()[:10]
        return f"mloop:{digest}"

    # -- conveniences over the services ----------------------------------------------------

    def predict(self, model: str, rows: list[dict[str, Any]]) -> PredictionResult:
        """Predict in-process with a registered model (not logged; the server logs)."""
        return self._predictor.predict(model, rows)

    def info(self) -> dict[str, Any]:
        return {
            "home": str(self.home),
            "database": self.db.display_url,
            "schema_revision": self.db.current_revision(),
            "artifacts": str(self.artifacts.root),
        }

    def close(self) -> None:
        self.features.close()
        self.db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.home)!r}, database={self.db.display_url!r})"
