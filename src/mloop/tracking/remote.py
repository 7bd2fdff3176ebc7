"""A tracking store on an mloop server, over HTTP: the same interface as the local store.

``mloop.init("http://host:port")`` (or ``MLOOP_TRACKING_URI``) makes the fluent API log here.
Errors come back as the same ``MloopError`` classes the server raised. Requests that fail for
the network's or the server's sake (connection refused, 502/503/504) are retried a few times;
that is safe because every write is idempotent: a run created twice with the same id, a metric
value stored twice, a param or tag set to the value it has, all leave one copy.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, TypeAdapter

from mloop.core import errors as mloop_errors
from mloop.core.errors import InvalidInput, MloopError, StorageError
from mloop.core.ids import new_id
from mloop.storage import safe_name
from mloop.tracking.records import (
    ArtifactInfo,
    Comparison,
    CreateRun,
    Experiment,
    LogBatch,
    MetricPoint,
    Operation,
    Page,
    Run,
    RunInput,
    RunStatus,
    UpdateRun,
    ViewType,
)
from mloop.tracking.runs import check_run_id

M = TypeVar("M", bound=BaseModel)
RETRIES = 4
_CODES: dict[str, type[MloopError]] = {}


def _error_classes(cls: type[MloopError]) -> None:
    _CODES.setdefault(cls.code, cls)
    for sub in cls.__subclasses__():
        _error_classes(sub)


_error_classes(mloop_errors.MloopError)


def _number(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def encode_operations(operations: Sequence[Operation], batch_id: str | None = None) -> bytes:
    """The batch as JSON, fast: NaN and infinities as MLflow's strings."""
    out: list[dict[str, Any]] = []
    for op in operations:
        if isinstance(op, LogBatch):
            out.append(
                {
                    "op": "log",
                    "run_id": op.run_id,
                    "metrics": [
                        {
                            "key": m.key,
                            "value": _number(m.value),
                            "step": m.step,
                            "timestamp": m.timestamp,
                        }
                        for m in op.metrics
                    ],
                    "params": op.params,
                    "tags": op.tags,
                }
            )
        else:
            out.append(op.model_dump(mode="json"))
    return json.dumps({"operations": out, "batch_id": batch_id}, allow_nan=False).encode()


def _error_from(status: int, reason: str, content: bytes) -> MloopError:
    """The server's error as the ``MloopError`` class it raised."""
    text = content.decode("utf-8", "replace")
    try:
        body = json.loads(text)
        cls = _CODES.get(body.get("error", ""), MloopError)
        message = body.get("message") or text
    except (ValueError, AttributeError):
        cls, message = MloopError, text or reason
    if cls is MloopError:
        cls = StorageError if status >= 500 else InvalidInput
    return cls(str(message))


class _BatchChannel:
    """One keep-alive connection for batches, the hot path: the standard library's client
    answers in about two thirds of httpx's time, which is most of what a small batch costs.
    A connection the server closed is opened again and the batch resent (batches carry ids,
    so a resend is never applied twice)."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self._timeout)
        conn.connect()
        if conn.sock is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def post(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        headers = {
            "content-type": "application/json",
            "user-agent": "mloop-client",
            "content-length": str(len(body)),
        }
        with self._lock:
            for attempt in (0, 1):
                reused = self._conn is not None
                conn = self._conn or self._connect()
                self._conn = conn
                try:
                    conn.request("POST", self._base + path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                except (http.client.HTTPException, OSError):
                    self.close_locked()
                    if attempt or not reused:
                        raise
                    continue  # the server closed an idle keep-alive connection: once more
                if response.will_close:
                    self.close_locked()
                return response.status, response.reason, data
        raise AssertionError("unreachable")  # pragma: no cover

    def close_locked(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self.close_locked()


class RemoteTrackingStore:
    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        # TCP_NODELAY: the request line and the body leave in separate writes; without it the
        # second waits for the server's delayed ACK on every request (uvicorn#3149's mirror)
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            limits=httpx.Limits(max_keepalive_connections=4, max_connections=8),
        )
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"user-agent": "mloop-client"},
            transport=transport,
        )
        self._batches = _BatchChannel(self.url, timeout)

    def close(self) -> None:
        self._http.close()
        self._batches.close()

    # -- transport ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        if json_body is not None:
            content = json.dumps(json_body, allow_nan=False).encode()
            headers = {**(headers or {}), "content-type": "application/json"}
        delay = 0.2
        for attempt in range(RETRIES + 1):
            try:
                response = self._http.request(
                    method, path, content=content, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                if attempt == RETRIES:
                    raise StorageError(
                        f"cannot reach the mloop server at {self.url}: {exc}"
                    ) from exc
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in (502, 503, 504) or attempt == RETRIES:
                    raise self._error(response)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, response: httpx.Response) -> MloopError:
        return _error_from(response.status_code, response.reason_phrase, response.content)

    def _get(self, path: str, model: type[M], **params: Any) -> M:
        response = self._request(
            "GET", path, params={k: v for k, v in params.items() if v is not None}
        )
        return model.model_validate_json(response.content)

    def _post(self, path: str, model: type[M], body: Any) -> M:
        return model.model_validate_json(self._request("POST", path, json_body=body).content)

    # -- experiments -------------------------------------------------------------------------

    def create_experiment(self, name: str, tags: Mapping[str, Any] | None = None) -> Experiment:
        body = {"name": name, "tags": {k: str(v) for k, v in (tags or {}).items()}}
        return self._post("/v1/experiments", Experiment, body)

    def get_or_create_experiment(self, name: str = "Default") -> Experiment:
        from mloop.core.errors import AlreadyExists, NotFound

        for _attempt in range(3):
            try:
                return self.get_experiment_by_name(name)
            except NotFound:
                pass
            try:
                return self.create_experiment(name)
            except AlreadyExists:
                continue
        return self.get_experiment_by_name(name)

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self._get(f"/v1/experiments/{quote(experiment_id, safe='')}", Experiment)

    def get_experiment_by_name(self, name: str) -> Experiment:
        return self._get(f"/v1/experiments/by-name/{quote(name, safe='')}", Experiment)

    def search_experiments(
        self,
        *,
        view: ViewType | str = "active",
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page[Experiment]:
        body = {
            "view": view,
            "filter": filter_string,
            "order_by": list(order_by) if order_by else None,
            "max_results": max_results,
            "page_token": page_token,
        }
        return self._post("/v1/experiments/search", Page[Experiment], body)

    def rename_experiment(self, experiment_id: str, new_name: str) -> Experiment:
        response = self._request(
            "PATCH",
            f"/v1/experiments/{quote(experiment_id, safe='')}",
            json_body={"name": new_name},
        )
        return Experiment.model_validate_json(response.content)

    def delete_experiment(self, experiment_id: str) -> Experiment:
        response = self._request("DELETE", f"/v1/experiments/{quote(experiment_id, safe='')}")
        return Experiment.model_validate_json(response.content)

    def restore_experiment(self, experiment_id: str) -> Experiment:
        return self._post(
            f"/v1/experiments/{quote(experiment_id, safe='')}/restore", Experiment, {}
        )

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        self._request(
            "PUT",
            f"/v1/experiments/{quote(experiment_id, safe='')}/tags/{quote(key, safe='')}",
            json_body={"value": str(value)},
        )

    # -- runs --------------------------------------------------------------------------------

    def apply(self, operations: Sequence[Operation], *, batch_id: str | None = None) -> None:
        """Send a batch. It carries an id, so the retries below (and the caller's, if it passes
        the same ``batch_id``) can never apply it twice."""
        if not operations:
            return
        body = encode_operations(operations, batch_id or new_id())
        delay = 0.2
        for attempt in range(RETRIES + 1):
            try:
                status, reason, content = self._batches.post("/v1/tracking/batch", body)
            except (http.client.HTTPException, OSError) as exc:
                if attempt == RETRIES:
                    raise StorageError(
                        f"cannot reach the mloop server at {self.url}: {exc}"
                    ) from exc
            else:
                if status < 400:
                    return
                if status not in (502, 503, 504) or attempt == RETRIES:
                    raise _error_from(status, reason, content)
            time.sleep(delay)
            delay *= 2

    def create_run(self, experiment_id: str = "0", **kwargs: Any) -> Run:
        run_id = kwargs.pop("run_id", None) or new_id()
        self.apply([CreateRun(run_id=run_id, experiment_id=experiment_id, **kwargs)])
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> Run:
        return self._get(f"/v1/runs/{_run(run_id)}", Run)

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | None = None,
        end_time: int | None = None,
        name: str | None = None,
    ) -> Run:
        self.apply([UpdateRun(run_id=run_id, status=status, end_time=end_time, name=name)])
        return self.get_run(run_id)

    def delete_run(self, run_id: str) -> Run:
        response = self._request("DELETE", f"/v1/runs/{_run(run_id)}")
        return Run.model_validate_json(response.content)

    def restore_run(self, run_id: str) -> Run:
        return self._post(f"/v1/runs/{_run(run_id)}/restore", Run, {})

    def delete_tag(self, run_id: str, key: str) -> None:
        self._request("DELETE", f"/v1/runs/{_run(run_id)}/tags/{quote(key, safe='')}")

    def search_runs(
        self,
        experiment_ids: Sequence[str] | None = None,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
        *,
        view: ViewType | str = "active",
    ) -> Page[Run]:
        body = {
            "experiment_ids": list(experiment_ids) if experiment_ids is not None else None,
            "filter": filter_string,
            "order_by": list(order_by) if order_by else None,
            "max_results": max_results,
            "page_token": page_token,
            "view": view,
        }
        return self._post("/v1/runs/search", Page[Run], body)

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        response = self._request("GET", f"/v1/runs/{_run(run_id)}/metrics/{quote(key, safe='')}")
        return _METRIC_POINTS.validate_json(response.content)

    def compare_runs(self, run_ids: Sequence[str]) -> Comparison:
        return self._post("/v1/runs/compare", Comparison, {"run_ids": list(run_ids)})

    def log_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None:
        self._request(
            "POST",
            f"/v1/runs/{_run(run_id)}/inputs",
            json_body=[i.model_dump(mode="json") for i in inputs],
        )

    # -- artifacts ---------------------------------------------------------------------------

    def log_artifact_bytes(self, run_id: str, path: str, data: bytes) -> ArtifactInfo:
        response = self._request(
            "PUT",
            f"/v1/runs/{_run(run_id)}/artifacts/{_artifact(path)}",
            content=data,
            headers={"content-type": "application/octet-stream"},
        )
        return ArtifactInfo.model_validate_json(response.content)

    def log_artifact(
        self, run_id: str, local_path: str | Path, path: str | None = None
    ) -> ArtifactInfo:
        source = Path(local_path)
        if not source.is_file():
            from mloop.core.errors import NotFound

            raise NotFound(f"file {source} does not exist")
        return self.log_artifact_bytes(run_id, path or source.name, source.read_bytes())

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactInfo]:
        response = self._request(
            "GET",
            f"/v1/runs/{_run(run_id)}/artifacts",
            params={"path": path} if path else None,
        )
        return _ARTIFACTS.validate_json(response.content)

    def read_artifact(self, run_id: str, path: str) -> bytes:
        response = self._request("GET", f"/v1/runs/{_run(run_id)}/artifacts/{_artifact(path)}")
        return response.content


def _run(run_id: str) -> str:
    """A run id checked here (not left to URL routing, which would read "../x" as a path)."""
    return quote(check_run_id(run_id), safe="")


def _artifact(path: str) -> str:
    """An artifact name checked here: HTTP clients fold "a/../b" into "b" before sending."""
    return quote(safe_name(path), safe="/")


_METRIC_POINTS = TypeAdapter(list[MetricPoint])
_ARTIFACTS = TypeAdapter(list[ArtifactInfo])
