"""Model packages: the files of a model plus ``mloop-model.json`` describing them.

A package is a set of named files. It is stored file by file in the artifact store; its
manifest (name → digest) is itself a blob, and the manifest's digest identifies the package.
"""

from __future__ import annotations

import io
import json
import platform
from importlib import metadata as importlib_metadata
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from mloop.core.errors import IntegrityError, InvalidInput, SchemaMismatch
from mloop.models.signature import Signature, frame_from_rows
from mloop.storage import ArtifactStore, safe_name

META_FILE = "mloop-model.json"
MODEL_FILE = "model.joblib"
FLAVOR_SKLEARN = "sklearn"
CAPTURED_PACKAGES = ("mloop", "scikit-learn", "numpy", "pandas", "scipy", "joblib")


def captured_dependencies() -> dict[str, str]:
    found: dict[str, str] = {"python": platform.python_version()}
    for name in CAPTURED_PACKAGES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


class ModelMeta(BaseModel):
    model_config = ConfigDict(frozen=True)

    flavor: str
    signature: Signature
    estimator: str
    dependencies: dict[str, str]
    info: dict[str, Any] = {}


def write_sklearn_package(estimator: Any, meta: ModelMeta) -> dict[str, bytes]:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    return {
        MODEL_FILE: buffer.getvalue(),
        META_FILE: meta.model_dump_json(indent=2).encode(),
    }


def store_package(artifacts: ArtifactStore, files: dict[str, bytes]) -> tuple[str, dict[str, str]]:
    """Store each file and the manifest; return the manifest digest and the manifest."""
    manifest = {safe_name(name): artifacts.put_bytes(data) for name, data in sorted(files.items())}
    digest = artifacts.put_bytes(json.dumps({"files": manifest}, sort_keys=True).encode())
    return digest, manifest


class LoadedModel:
    """A model ready to predict on raw rows."""

    def __init__(self, meta: ModelMeta, estimator: Any) -> None:
        self.meta = meta
        self.signature = meta.signature
        self.estimator = estimator

    @property
    def is_classifier(self) -> bool:
        return self.signature.task == "classification"

    def predict_frame(self, frame: pd.DataFrame) -> tuple[list[Any], list[dict[str, float]] | None]:
        # a fitted scikit-learn estimator only reads its state in predict: safe across threads
        try:
            predictions = self.estimator.predict(frame)
            probabilities = None
            if self.is_classifier and hasattr(self.estimator, "predict_proba"):
                probabilities = self.estimator.predict_proba(frame)
        except (ValueError, TypeError) as exc:
            # the rows fit the signature but not the model (a model that cannot take nulls,
            # say): the caller's data, not a server fault
            raise SchemaMismatch(f"the model cannot predict on these rows: {exc}") from exc
        labels = [_plain(v) for v in np.asarray(predictions).tolist()]
        probs = None
        if probabilities is not None:
            classes = [str(_plain(c)) for c in self.estimator.classes_]
            probs = [
                {c: float(p) for c, p in zip(classes, row, strict=True)}
                for row in np.asarray(probabilities).tolist()
            ]
        return labels, probs

    def predict_rows(self, rows: Any) -> tuple[list[Any], list[dict[str, float]] | None]:
        """Validate ``rows`` against the signature, then predict."""
        return self.predict_frame(frame_from_rows(rows, self.signature))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_package(artifacts: ArtifactStore, manifest_digest: str) -> LoadedModel:
    try:
        manifest = json.loads(artifacts.get_bytes(manifest_digest))["files"]
        missing = [f for f in (META_FILE, MODEL_FILE) if f not in manifest]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"model manifest {manifest_digest} is unreadable: {exc}") from exc
    if missing:
        raise IntegrityError(f"model manifest {manifest_digest} lists no {missing[0]}")
    meta = ModelMeta.model_validate_json(artifacts.get_bytes(manifest[META_FILE]))
    if meta.flavor != FLAVOR_SKLEARN:
        raise InvalidInput(f"model flavor {meta.flavor!r} is not supported by this mloop")
    import joblib

    estimator = joblib.load(io.BytesIO(artifacts.get_bytes(manifest[MODEL_FILE])))
    return LoadedModel(meta, estimator)
