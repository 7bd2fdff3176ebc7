"""The serving data plane over HTTP, as pure ASGI in front of the FastAPI application.

Predict requests are the server's hot path, so they skip FastAPI's routing, dependency
injection and body models: this middleware answers them itself (orjson in, orjson out) and
hands every other request to the application. The same routes are declared in the OpenAPI
document by :mod:`mloop.api.routers.deployments`, which serves them through the same
functions when this middleware is not installed.

Routes:

- ``POST /v1/deployments/{name}/predict`` — mloop's body: ``{"rows": [...]}`` or
  ``{"columns": {...}}``, optional ``"key"`` for sticky routing (or the ``X-Mloop-Key`` header).
- ``POST /v1/deployments/{name}/invocations`` and ``POST /invocations`` (the server's default
  deployment) — MLflow's scoring body shapes; ``GET /ping`` and ``GET /health`` as MLflow's
  scoring server has them.
- Open Inference Protocol V2: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``,
  ``/v2/models/{name}[/versions/{v}]`` (metadata), ``…/ready``, ``POST …/infer``. The model
  name is the deployment's name; a version selects the variant serving that model version.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from mloop import __version__
from mloop.api.auth import actor_for
from mloop.core.errors import InvalidInput, MloopError, NotFound
from mloop.serving import Served, ServingRuntime, protocols

log = logging.getLogger("mloop.api")

JSON_HEADERS = [(b"content-type", b"application/json")]
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_OTHER_PATHS = ("/invocations", "/ping", "/health")
_JSON_TYPES = (b"application/json", b"text/json", b"application/x-json")


class _Reply(Exception):
    """A finished answer raised out of the request's handling."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body


def _error(exc: MloopError) -> _Reply:
    return _Reply(exc.http_status, exc.to_dict())


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, or 413 once it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Reply(400, {"error": "INVALID_INPUT", "message": "the client went away"})
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Reply(
                413, {"error": "PAYLOAD_TOO_LARGE", "message": f"request body over {limit} bytes"}
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(body: bytes, content_type: bytes | None) -> Any:
    if content_type is not None:
        media = content_type.split(b";", 1)[0].strip().lower()
        if media and media not in _JSON_TYPES:
            raise _Reply(
                415,
                {
                    "error": "UNSUPPORTED_MEDIA_TYPE",
                    "message": "send JSON (application/json), not "
                    + media.decode(errors="replace"),
                },
            )
    if not body:
        raise _error(InvalidInput("the request body is empty; send a JSON object"))
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _error(InvalidInput(f"the request body is not valid JSON: {exc}")) from None


def native_body(served: Served) -> dict[str, Any]:
    body: dict[str, Any] = {
        "deployment": served.deployment,
        "variant": served.variant,
        "model": served.model,
        "version": served.version,
        "request_id": served.request_id,
        "predictions": served.predictions,
    }
    if served.probabilities is not None:
        body["probabilities"] = served.probabilities
    body["latency_ms"] = served.latency_ms
    return body


class ServingEndpoints:
    """What each data-plane route does, given its parsed parts: shared by the ASGI fast path
    and the FastAPI routes."""

    def __init__(self, runtime: ServingRuntime, default_deployment: str | None = None) -> None:
        self.runtime = runtime
        self.default_deployment = default_deployment

    async def _serve(
        self, name: str, rows: Any, key: str | None, version: int | None = None
    ) -> Served:
        runtime = self.runtime
        live = await runtime.lookup(name)
        runtime.admit()
        try:
            return await runtime.predict(live, rows, key=key, version=version)
        finally:
            runtime.release()

    async def native(self, name: str, body: Any, key: str | None) -> dict[str, Any]:
        rows = protocols.rows_from_native(body)
        if isinstance(body, dict) and body.get("key") is not None:
            key = str(body["key"])
        return native_body(await self._serve(name, rows, key))

    def default(self) -> str:
        if self.default_deployment is not None:
            return self.default_deployment
        names = self.runtime.names()
        if len(names) == 1:
            return names[0]
        raise NotFound(
            "POST /invocations needs one deployment: this server has "
            f"{len(names) or 'no'} deployments; use /v1/deployments/NAME/invocations or start "
            "the server with --deployment NAME"
        )

    async def invocations(self, name: str | None, body: Any, key: str | None) -> dict[str, Any]:
        live = await self.runtime.lookup(name or self.default())
        rows = protocols.rows_from_mlflow(body, live.served[0].served.input_names)
        served = await self._serve(live.name, rows, key)
        return protocols.mlflow_response(served.predictions)

    async def v2_infer(
        self, name: str, version: int | None, body: Any, key: str | None
    ) -> dict[str, Any]:
        live = await self.runtime.lookup(name)
        first = live.variant_for_version(version) if version is not None else live.served[0]
        rows, request_id, requested = protocols.rows_from_v2(
            body, first.served.input_names, dict(first.served.input_types)
        )
        if isinstance(body, dict) and isinstance(body.get("parameters"), dict):
            given = body["parameters"].get("key")
            if given is not None:
                key = str(given)
        served = await self._serve(name, rows, key, version)
        return protocols.v2_response(
            served.deployment,
            str(served.version),
            request_id,
            served.predictions,
            served.probabilities,
            requested,
        )

    async def v2_metadata(self, name: str, version: int | None) -> dict[str, Any]:
        live = await self.runtime.lookup(name)
        chosen = live.variant_for_version(version) if version is not None else live.served[0]
        signature = chosen.served.signature
        versions = sorted({str(v.version.version) for v in live.served})
        return protocols.v2_model_metadata(
            name,
            versions if version is None else [str(version)],
            f"mloop_{chosen.served.runtime}",
            [(c.name, c.type) for c in signature.inputs],
            signature.classes if signature.task == "classification" else None,
        )

    async def v2_ready(self, name: str, version: int | None) -> dict[str, Any]:
        live = await self.runtime.lookup(name)
        if version is not None:
            live.variant_for_version(version)
        return {"name": name, "ready": True}

    def v2_server(self) -> dict[str, Any]:
        return {"name": "mloop", "version": __version__, "extensions": []}


def _version(text: str) -> int:
    if not text.isdigit():
        raise NotFound(f"model version {text!r} is not a number")
    return int(text)


class ServingMiddleware:
    """Answers the data-plane routes; passes everything else to ``app``."""

    def __init__(self, app: ASGIApp, endpoints: ServingEndpoints, *, max_body_bytes: int) -> None:
        self.app = app
        self.endpoints = endpoints
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not (path.startswith(("/v1/deployments/", "/v2")) or path in _OTHER_PATHS):
            await self.app(scope, receive, send)
            return
        handler = self._route(scope["method"], path)
        if handler is None:  # e.g. GET /v1/deployments/NAME: the application's
            await self.app(scope, receive, send)
            return
        deployment = handler[2]
        try:
            actor_for(scope["headers"])
            status, body = 200, await handler[0](scope, receive, *handler[1])
        except _Reply as reply:
            status, body = reply.status, reply.body
        except MloopError as exc:
            status, body = exc.http_status, exc.to_dict()
            if status >= 500 and status != 503:
                log.error("%s: %s", exc.code, exc.message)
        except Exception as exc:
            log.exception("unhandled error on %s", path)
            status = 500
            body = {"error": "INTERNAL_ERROR", "message": f"internal error: {type(exc).__name__}"}
        if status != 200 and deployment is not None:
            self.endpoints.runtime.count_error(deployment, str(body.get("error", status)))
        payload = orjson.dumps(body, option=_NUMPY)
        headers = [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        if status == 503:
            headers.append((b"retry-after", b"1"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _route(self, method: str, path: str) -> tuple[Any, tuple[Any, ...], str | None] | None:
        """(handler, its arguments, the deployment it concerns) for a data-plane path, or
        None to leave the request to the application."""
        parts = path.strip("/").split("/")
        n = len(parts)
        want: str
        found: tuple[Any, tuple[Any, ...], str | None]
        if parts[0] == "v1":  # v1/deployments/NAME/(predict|invocations)
            if n == 4 and method == "POST":
                if parts[3] == "predict":
                    return self._native, (parts[2],), parts[2]
                if parts[3] == "invocations":
                    return self._invocations, (parts[2],), parts[2]
            return None
        if parts[0] == "invocations":
            want, found = "POST", (self._invocations, (None,), None)
        elif parts[0] in ("ping", "health"):
            want, found = "GET", (self._ping, (), None)
        elif n == 1:
            want, found = "GET", (self._v2_server, (), None)
        elif parts[1] == "health" and n == 3 and parts[2] in ("live", "ready"):
            want, found = "GET", (self._v2_health, (parts[2],), None)
        elif parts[1] != "models" or n < 3:
            return self._not_found(path)
        else:
            name, rest = parts[2], parts[3:]
            version: str | None = None
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            if not rest:
                want, found = "GET", (self._v2_metadata, (name, version), name)
            elif rest == ["ready"]:
                want, found = "GET", (self._v2_ready, (name, version), name)
            elif rest == ["infer"]:
                want, found = "POST", (self._v2_infer, (name, version), name)
            else:
                return self._not_found(path)
        return found if method == want else self._not_allowed()

    def _not_allowed(self) -> tuple[Any, tuple[Any, ...], None]:
        async def refuse(_scope: Scope, _receive: Receive) -> Any:
            raise _Reply(405, {"error": "METHOD_NOT_ALLOWED", "message": "method not allowed here"})

        return refuse, (), None

    def _not_found(self, path: str) -> tuple[Any, tuple[Any, ...], None]:
        async def missing(_scope: Scope, _receive: Receive) -> Any:
            raise _Reply(404, {"error": "NOT_FOUND", "message": f"no route {path}"})

        return missing, (), None

    async def _json(self, scope: Scope, receive: Receive) -> Any:
        content_type = None
        for header, value in scope["headers"]:
            if header == b"content-type":
                content_type = value
                break
        return parse_json(await read_body(receive, self.max_body_bytes), content_type)

    @staticmethod
    def _key(scope: Scope) -> str | None:
        for header, value in scope["headers"]:
            if header == b"x-mloop-key":
                key: str = value.decode("latin-1")
                return key
        return None

    async def _native(self, scope: Scope, receive: Receive, name: str) -> Any:
        body = await self._json(scope, receive)
        return await self.endpoints.native(name, body, self._key(scope))

    async def _invocations(self, scope: Scope, receive: Receive, name: str | None) -> Any:
        body = await self._json(scope, receive)
        return await self.endpoints.invocations(name, body, self._key(scope))

    async def _ping(self, _scope: Scope, _receive: Receive) -> Any:
        return {"status": "ok"}

    async def _v2_server(self, _scope: Scope, _receive: Receive) -> Any:
        return self.endpoints.v2_server()

    async def _v2_health(self, _scope: Scope, _receive: Receive, which: str) -> Any:
        if which == "live":
            return {"live": True}
        if not self.endpoints.runtime.ready:
            raise _Reply(503, {"ready": False})
        return {"ready": True}

    async def _v2_metadata(
        self, _scope: Scope, _receive: Receive, name: str, version: str | None
    ) -> Any:
        return await self.endpoints.v2_metadata(
            name, _version(version) if version is not None else None
        )

    async def _v2_ready(
        self, _scope: Scope, _receive: Receive, name: str, version: str | None
    ) -> Any:
        return await self.endpoints.v2_ready(
            name, _version(version) if version is not None else None
        )

    async def _v2_infer(
        self, scope: Scope, receive: Receive, name: str, version: str | None
    ) -> Any:
        number = _version(version) if version is not None else None
        body = await self._json(scope, receive)
        return await self.endpoints.v2_infer(name, number, body, self._key(scope))
