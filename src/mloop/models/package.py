"""Model packages: the files of a model plus ``mloop-model.json`` describing them.

A package is a set of named files. It is stored file by file in the artifact store; its
manifest (name → digest) is itself a blob, and the manifest's digest identifies the package.

An sklearn package is also an MLflow model: next to mloop's ``model.joblib`` it holds an
``MLmodel`` file (the ``sklearn`` and ``python_function`` flavors) and ``model.pkl``, a plain
pickle of the same pipeline, so ``mlflow.pyfunc.load_model`` loads it unchanged.
"""

from __future__ import annotations

import io
import json
import pickle
import platform
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from mloop.core.errors import IntegrityError, InvalidInput, SchemaMismatch
from mloop.core.lazy import lazy_module
from mloop.models.signature import Signature, frame_from_rows
from mloop.storage import ArtifactStore, safe_name

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")

META_FILE = "mloop-model.json"
MODEL_FILE = "model.joblib"
MLMODEL_FILE = "MLmodel"  # MLflow's description of the same model
PICKLE_FILE = "model.pkl"  # a plain pickle, what MLflow's sklearn flavor loads
REQUIREMENTS_FILE = "requirements.txt"
EXPORT_FILE = "mloop-export.json"  # an exported version: what it is, and each file's sha256
FLAVOR_SKLEARN = "sklearn"
CAPTURED_PACKAGES = ("mloop", "scikit-learn", "numpy", "pandas", "scipy", "joblib")


def captured_dependencies(modules: Sequence[str] = ()) -> dict[str, str]:
    """Python's version and the installed versions of ``CAPTURED_PACKAGES`` plus the
    distributions that provide ``modules`` (top-level import names, e.g. ``xgboost``, whose
    distribution may be ``xgboost-cpu``)."""
    found: dict[str, str] = {"python": platform.python_version()}
    names = list(CAPTURED_PACKAGES)
    if modules:
        providers = importlib_metadata.packages_distributions()
        for module in modules:
            names += providers.get(module, [module])
    for name in dict.fromkeys(names):
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
    """The package's files: mloop's (``model.joblib``, ``mloop-model.json``) and MLflow's
    (``MLmodel``, ``model.pkl``, ``requirements.txt``)."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    pickled = pickle.dumps(estimator, protocol=pickle.DEFAULT_PROTOCOL)
    return {
        MODEL_FILE: buffer.getvalue(),
        META_FILE: meta.model_dump_json(indent=2).encode(),
        MLMODEL_FILE: mlmodel_file(meta, len(pickled)),
        PICKLE_FILE: pickled,
        REQUIREMENTS_FILE: requirements_file(meta),
    }


def mlmodel_file(meta: ModelMeta, size: int) -> bytes:
    """MLflow's ``MLmodel`` for an sklearn package: what ``mlflow.sklearn`` and
    ``mlflow.pyfunc`` need to load ``model.pkl`` (serialization format "pickle")."""
    import yaml

    deps = meta.dependencies
    description = {
        "artifact_path": "model",
        "flavors": {
            "python_function": {
                "loader_module": "mlflow.sklearn",
                "model_path": PICKLE_FILE,
                "predict_fn": "predict",
                "python_version": deps.get("python", platform.python_version()),
            },
            "sklearn": {
                "code": None,
                "pickled_model": PICKLE_FILE,
                "serialization_format": "pickle",
                "sklearn_version": deps.get("scikit-learn", "unknown"),
            },
        },
        "model_size_bytes": size,
        "metadata": {"mloop_estimator": meta.estimator, "mloop_version": deps.get("mloop")},
    }
    return yaml.safe_dump(description, sort_keys=True).encode()


def requirements_file(meta: ModelMeta) -> bytes:
    """Pinned pip requirements of the pipeline (what MLflow reads to build an environment):
    the captured packages, the estimator's own (XGBoost, LightGBM, torch) among them."""
    lines = [
        f"{name}=={v}"
        for name, v in sorted(meta.dependencies.items())
        if name not in ("python", "mloop", "joblib")
    ]
    return ("\n".join(lines) + "\n").encode()


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
            estimator, rows = self.estimator, frame
            steps = getattr(estimator, "steps", None)
            if steps and len(steps) > 1 and self.is_classifier and _is_pipeline(estimator):
                # a pipeline's preprocessing once for both calls below, not once per call (its
                # column transformer is most of a small request's time)
                rows = estimator[:-1].transform(frame)
                estimator = steps[-1][1]
            predictions = estimator.predict(rows)
            probabilities = None
            if self.is_classifier and hasattr(estimator, "predict_proba"):
                probabilities = estimator.predict_proba(rows)
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


def _is_pipeline(estimator: Any) -> bool:
    from sklearn.pipeline import Pipeline

    return isinstance(estimator, Pipeline)


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


def load_folder(path: str | Path) -> LoadedModel:
    """A model version exported to a folder (``mloop models export``), loaded without any
    workspace: every file is checked against the sha256 the export recorded."""
    import hashlib

    import joblib

    folder = Path(path)
    try:
        described = json.loads((folder / EXPORT_FILE).read_bytes())
        files: dict[str, str] = described["files"]
    except FileNotFoundError as exc:
        raise InvalidInput(f"{folder} is not an exported model: it has no {EXPORT_FILE}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{folder / EXPORT_FILE} is unreadable: {exc}") from exc
    for name in (META_FILE, MODEL_FILE):
        if name not in files:
            raise IntegrityError(f"the export at {folder} lists no {name}")
    contents: dict[str, bytes] = {}
    for name in (META_FILE, MODEL_FILE):
        try:
            data = (folder / safe_name(name)).read_bytes()
        except FileNotFoundError as exc:
            raise IntegrityError(f"the export at {folder} lacks its file {name}") from exc
        if hashlib.sha256(data).hexdigest() != files[name]:
            raise IntegrityError(
                f"{folder / name} is corrupt: its bytes no longer match the export's sha256"
            )
        contents[name] = data
    meta = ModelMeta.model_validate_json(contents[META_FILE])
    if meta.flavor != FLAVOR_SKLEARN:
        raise InvalidInput(f"model flavor {meta.flavor!r} is not supported by this mloop")
    return LoadedModel(meta, joblib.load(io.BytesIO(contents[MODEL_FILE])))
