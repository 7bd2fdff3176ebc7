"""REST: appending rows (JSON or Arrow IPC), diffs, segments, time-travel refs and the PII
policy under ``/v1/datasets``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mloop.api import create_app
from mloop.storage import tables
from mloop.workspace import Workspace

ARROW = "application/vnd.apache.arrow.stream"
embedded = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def client(ws: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(ws, log_predictions=False)) as c:
        yield c


def state(ws: Workspace) -> tuple[frozenset[str], int, int]:
    root = ws.artifacts.root
    files = frozenset(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    with ws.db.read() as conn:
        versions = conn.execute(
            sa.select(sa.func.count()).select_from(tables.dataset_versions)
        ).scalar_one()
        datasets = conn.execute(
            sa.select(sa.func.count()).select_from(tables.datasets)
        ).scalar_one()
    return files, int(versions), int(datasets)


def arrow_body(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


ROWS = [{"id": 1, "amount": 9.5, "city": "NY"}, {"id": 2, "amount": 3.0, "city": None}]


def test_rows_append_to_a_dataset_the_first_call_creating_it(
    client: TestClient, ws: Workspace
) -> None:
    first = client.post("/v1/datasets/orders/rows", json=ROWS)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1
    assert first.json()["row_count"] == 2

    second = client.post(
        "/v1/datasets/orders/rows", json={"rows": [{"id": 3, "amount": 1, "city": "LA"}]}
    )
    assert second.status_code == 201, second.text
    body = second.json()
    assert (body["version"], body["row_count"], body["kind"]) == (2, 3, "rows")
    assert body["segments"] == [[1, 2]]

    third = client.post(
        "/v1/datasets/orders/rows",
        content=arrow_body(pa.table({"city": ["SF"], "id": [4], "amount": [2.5]})),
        headers={"content-type": ARROW},
    )
    assert third.status_code == 201, third.text
    assert ws.datasets.load("orders").column("id").to_pylist() == [1, 2, 3, 4]
    assert [s["rows"] for s in ws.datasets.segments("orders@3")] == [2, 1, 1]


BAD: list[tuple[str, bytes, str, int, str]] = [
    ("empty", b"", "application/json", 400, "body is empty"),
    ("blank", b"  \n", "application/json", 400, "body is empty"),
    ("invalid JSON", b'[{"id": 1,', "application/json", 400, "not valid JSON"),
    ("not a list", b'{"id": 1}', "application/json", 400, "a JSON list of objects"),
    ("a scalar", b"42", "application/json", 400, "must be a list of objects"),
    ("not objects", b"[1, 2]", "application/json", 400, "row 0 is not an object"),
    ("no rows", b"[]", "application/json", 400, "no rows given"),
    (
        "missing field",
        b'[{"id": 5, "amount": 1.0}]',
        "application/json",
        422,
        "row 0 lacks field 'city'",
    ),
    (
        "wrong type",
        b'[{"id": 5, "amount": "lots", "city": "NY"}]',
        "application/json",
        422,
        "field 'amount' is float in the dataset but row 0 holds string",
    ),
    (
        "new field",
        b'[{"id": 5, "amount": 1.0, "city": "NY", "vip": true}]',
        "application/json",
        422,
        "row 0 has field 'vip'",
    ),
    ("bad arrow", b"not arrow at all", ARROW, 400, "not an Arrow IPC stream"),
    ("wrong content type", b"id\n1\n", "text/csv", 400, "is not rows"),
]


def test_bad_rows_are_refused_and_nothing_is_written(client: TestClient, ws: Workspace) -> None:
    assert client.post("/v1/datasets/orders/rows", json=ROWS).status_code == 201
    before = state(ws)
    for what, data, content_type, status, message in BAD:
        r = client.post(
            "/v1/datasets/orders/rows", content=data, headers={"content-type": content_type}
        )
        assert r.status_code == status, (what, r.text)
        assert message in r.json()["message"], (what, r.json())
        assert r.json()["error"] in ("INVALID_INPUT", "SCHEMA_MISMATCH"), what
    # an Arrow table of another schema: 422 listing each change
    r = client.post(
        "/v1/datasets/orders/rows",
        content=arrow_body(pa.table({"id": ["x"], "amount": [1.0]})),
        headers={"content-type": ARROW},
    )
    assert r.status_code == 422
    assert {(c["column"], c["change"]) for c in r.json()["details"]["changes"]} == {
        ("id", "retyped"),
        ("city", "removed"),
    }
    # wrong types list the change too
    r = client.post("/v1/datasets/orders/rows", json=[{"id": "5", "amount": 1, "city": "NY"}])
    assert r.json()["details"]["changes"] == [
        {"column": "id", "change": "retyped", "from": "integer", "to": "string", "row": 0}
    ]
    assert state(ws) == before
    # and a new dataset is not created by a bad first call
    r = client.post("/v1/datasets/fresh/rows", json=[{"a": 1}, {"b": 2}])
    assert r.status_code == 400
    assert state(ws) == before


def test_an_oversized_body_is_refused(tmp_path: Any) -> None:
    ws = Workspace.open(tmp_path / "small", ingest_max_body_bytes=1000)
    try:
        with TestClient(create_app(ws, log_predictions=False)) as client:
            rows = [{"id": i, "text": "x" * 20} for i in range(100)]
            r = client.post("/v1/datasets/big/rows", json=rows)
            assert r.status_code == 413
            assert r.json()["error"] == "PAYLOAD_TOO_LARGE"
            assert "ingest_max_body_bytes" in r.json()["message"]

            # a chunked body with no length is counted as it arrives
            def chunks() -> Iterator[bytes]:
                yield json.dumps(rows).encode()

            r = client.post(
                "/v1/datasets/big/rows",
                content=chunks(),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 413
            assert client.post("/v1/datasets/big/rows", json=rows[:5]).status_code == 201
            assert ws.datasets.get("big").row_count == 5
    finally:
        ws.close()


def test_versions_segments_diff_and_time_travel(client: TestClient, ws: Workspace) -> None:
    v1 = client.post("/v1/datasets/d/rows", json=ROWS).json()
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    client.post("/v1/datasets/d/rows", json=[{"id": 9, "amount": 100.0, "city": "SF"}])

    segments = client.get("/v1/datasets/d/versions/2/segments")
    assert segments.status_code == 200
    assert [s["rows"] for s in segments.json()] == [2, 1]
    assert segments.json()[0]["data_digest"] == v1["data_digest"]

    # time travel in the existing route: the version that was latest at that instant
    at = between.isoformat().replace("+00:00", "Z")
    r = client.get(f"/v1/datasets/d/versions/{at}")
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    r = client.get(f"/v1/datasets/d/versions/{(between - timedelta(days=1)).date()}")
    assert r.status_code == 404
    assert client.get(f"/v1/datasets/d/versions/{at}/segments").json()[0]["rows"] == 2

    diff = client.get("/v1/datasets/d/diff", params={"from": "1", "to": "latest"})
    assert diff.status_code == 200, diff.text
    body = diff.json()
    assert (body["from"], body["to"]) == ("d@1", "d@2")
    assert body["rows"] == {"from": 2, "to": 3, "delta": 1}
    assert (body["shared_segments"], body["new_segments"]) == (1, 1)
    assert body["schema"] == []
    assert body["profile"]["amount"]["max"] == {"from": 9.5, "to": 100.0, "delta": 90.5}
    assert client.get("/v1/datasets/d/diff", params={"from": at}).json()["from"] == "d@1"
    assert client.get("/v1/datasets/d/diff", params={"from": "d@1", "to": "d@1"}).json()[
        "rows"
    ] == {"from": 2, "to": 2, "delta": 0}
    assert client.get("/v1/datasets/d/diff").status_code == 422  # from is required
    assert client.get("/v1/datasets/d/diff", params={"from": "7"}).status_code == 404
    assert client.get("/v1/datasets/nope/diff", params={"from": "1"}).status_code == 404
    assert client.get("/v1/datasets/d/sources").json() == []
    assert client.get("/v1/datasets/nope/sources").status_code == 404


def test_policy_routes_never_return_the_key(client: TestClient, ws: Workspace) -> None:
    r = client.put("/v1/datasets/people/policy", json={"pii": {"email": "hash", "ssn": "drop"}})
    assert r.status_code == 200, r.text
    assert r.json() == {"pii": {"email": "hash", "ssn": "drop"}}
    assert client.get("/v1/datasets/people/policy").json() == r.json()
    stored = ws.datasets._stored_policy("people")
    assert stored is not None
    assert stored["key"] not in json.dumps(r.json())
    bad = client.put("/v1/datasets/people/policy", json={"pii": {"email": "encrypt"}})
    assert bad.status_code == 400
    assert "not one of hash, mask, drop" in bad.json()["message"]
    assert client.put("/v1/datasets/people/policy", json={"pii": "email"}).status_code == 422
    assert client.get("/v1/datasets/nobody/policy").status_code == 404

    raw = [{"id": 1, "email": "ann@example.com", "ssn": "078-05-1120"}]
    version = client.post("/v1/datasets/people/rows", json=raw).json()
    text = json.dumps(version)
    assert "ann@example.com" not in text
    assert "078-05-1120" not in text
    for path in ("/v1/datasets/people/versions/1", "/v1/datasets/people/policy"):
        body = client.get(path).text
        assert stored["key"] not in body
        assert "ann@example.com" not in body


def test_an_integer_beyond_64_bits_is_refused_naming_the_field(
    client: TestClient, ws: Workspace
) -> None:
    huge = 2**70
    body = json.dumps([{"id": 1, "n": huge}])
    r = client.post(
        "/v1/datasets/wide/rows", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert "'n'" in r.json()["message"]
    assert str(huge) not in r.text
    assert client.post("/v1/datasets/wide/rows", json=[{"id": 1, "n": 2}]).status_code == 201
    r = client.post(
        "/v1/datasets/wide/rows", content=body, headers={"content-type": "application/json"}
    )
    assert (r.status_code, r.json()["error"]) == (422, "SCHEMA_MISMATCH")
    assert "'n'" in r.json()["message"]
    assert str(huge) not in r.text
    assert ws.datasets.get("wide").row_count == 1


def test_uploads_and_suites_are_read_within_their_limits(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mloop.api.routers import datasets as router

    ws = Workspace.open(tmp_path / "small", ingest_max_body_bytes=1000)
    csv = "id,text\n" + "".join(f"{i},{'x' * 20}\n" for i in range(100))

    def chunked(data: str) -> Iterator[bytes]:
        yield data.encode()

    try:
        with TestClient(create_app(ws, log_predictions=False)) as client:
            for content in (csv, chunked(csv)):  # with a Content-Length, and without
                r = client.post(
                    "/v1/datasets/big/versions",
                    content=content,
                    headers={"content-type": "text/csv"},
                )
                assert (r.status_code, r.json()["error"]) == (413, "PAYLOAD_TOO_LARGE")
                assert "ingest_max_body_bytes" in r.json()["message"]
            small = client.post(
                "/v1/datasets/big/versions",
                content=csv[:200].rsplit("\n", 1)[0] + "\n",
                headers={"content-type": "text/csv"},
            )
            assert small.status_code == 201, small.text

            monkeypatch.setattr(router, "MAX_SUITE_BYTES", 100)
            suite = json.dumps({"expectations": [{"type": "not_null", "column": "id"}] * 5})
            for content in (suite, chunked(suite)):
                r = client.put(
                    "/v1/suites/s", content=content, headers={"content-type": "application/json"}
                )
                assert (r.status_code, r.json()["error"]) == (413, "PAYLOAD_TOO_LARGE")
                assert "for a suite" in r.json()["message"]
        assert [d.name for d in ws.datasets.list()] == ["big"]
    finally:
        ws.close()
