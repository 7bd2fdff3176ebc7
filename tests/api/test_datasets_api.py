"""The REST face of datasets and validation: ``/v1/datasets``, ``/v1/suites``,
``/v1/validations``, ``/v1/quarantines`` and ``/v1/lineage``."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mloop.api import create_app
from mloop.storage import tables
from mloop.workspace import Workspace

CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
NDJSON = "application/x-ndjson"

# tests whose subject is not the metadata backend run on SQLite only
embedded = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def client(ws: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(ws, log_predictions=False)) as c:
        yield c


def sales(n: int = 120) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "amount": [float(i % 50) + 1.0 for i in range(n)],
            "city": [("NY", "LA", "SF")[i % 3] for i in range(n)],
        }
    )


def broken() -> pl.DataFrame:
    """``sales()`` with rows 0-2 negative and row 10 in an unknown city."""
    i = pl.int_range(pl.len())
    return sales().with_columns(
        pl.when(i < 3).then(-5.0).otherwise(pl.col("amount")).alias("amount"),
        pl.when(i == 10).then(pl.lit("XX")).otherwise(pl.col("city")).alias("city"),
    )


def body(frame: pl.DataFrame, content_type: str) -> bytes:
    sink = io.BytesIO()
    if content_type == CSV:
        frame.write_csv(sink)
    elif content_type == PARQUET:
        frame.write_parquet(sink)
    else:
        frame.write_ndjson(sink)
    return sink.getvalue()


def post_data(client: TestClient, name: str, data: bytes, content_type: str | None) -> Any:
    headers = {"content-type": content_type} if content_type else {}
    return client.post(f"/v1/datasets/{name}/versions", content=data, headers=headers)


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


def assert_error(response: Any, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] == code
    assert message in payload["message"], payload["message"]


# -- ingest ---------------------------------------------------------------------------------


def test_ingest_csv_parquet_and_json_lines(ws: Workspace, client: TestClient) -> None:
    for k, content_type in enumerate([CSV, PARQUET, NDJSON, f"{CSV}; charset=utf-8"]):
        frame = sales(100 + k)
        before = state(ws)

        response = post_data(client, "sales", body(frame, content_type.split(";")[0]), content_type)

        assert response.status_code == 201, response.text
        version = response.json()
        assert (version["dataset"], version["version"], version["kind"]) == (
            "sales",
            k + 1,
            "ingest",
        )
        assert version["row_count"] == 100 + k
        sent = body(frame, content_type.split(";")[0])
        assert version["source"] == f"upload:sha256:{hashlib.sha256(sent).hexdigest()}"
        upstream = ws.lineage.upstream("dataset_version", version["id"])
        assert [(e.src.type, e.src.id) for e in upstream] == [("source", version["source"])]
        assert [(c["name"], c["type"]) for c in version["schema"]["columns"]] == [
            ("id", "integer"),
            ("amount", "float"),
            ("city", "string"),
        ]
        assert version["profile"]["amount"]["min"] == 1.0
        assert version["profile"]["city"]["cardinality"] == 3
        assert len(version["content_hash"]) == 64
        # the data is a new Parquet blob holding exactly the rows sent
        blob = ws.artifacts.path(version["data_digest"])
        after = state(ws)
        assert after[0] - before[0] == {str(blob.relative_to(ws.artifacts.root))}
        assert after[1] == before[1] + 1
        assert pl.from_arrow(pq.read_table(blob)).equals(frame)  # type: ignore[union-attr]
        assert ws.datasets.get(f"sales@{k + 1}").model_dump(mode="json") == version

        # the same content again: the same version, nothing written
        again = post_data(client, "sales", body(frame, CSV), CSV)
        assert again.status_code == 201
        assert again.json() == version
        assert state(ws) == after

    records = ws.audit.list(object_type="dataset_version", object_id="sales@1")
    assert [r.action for r in records] == ["dataset.version.create"]


@embedded
def test_bad_bodies_are_400_and_write_nothing(ws: Workspace, client: TestClient) -> None:
    good = body(sales(), CSV)
    assert post_data(client, "sales", good, CSV).status_code == 201
    before = state(ws)
    cases: list[tuple[str, bytes, str | None, str]] = [
        ("sales", good, None, "content type '(none)' is not a data format; send one of:"),
        ("sales", good, "application/json", "content type 'application/json' is not a data"),
        ("sales", good, "text/plain", "send one of: application/csv"),
        ("sales", b"", CSV, "the request body is empty"),
        ("sales", b"id,amount\n", CSV, "the request body has a header but no rows"),
        ("sales", b"id,amount\n1,2\n2,3,4\n", CSV, "Expected 2 columns, got 3"),
        ("sales", b"id,amount\n1,2\n2\n", CSV, "Expected 2 columns, got 1"),
        ("sales", b"id,id\n1,2\n", CSV, "repeats column names: id"),
        ("sales", os.urandom(300), PARQUET, "cannot read the request body as parquet"),
        ("sales", good, PARQUET, "cannot read the request body as parquet"),
        ("sales", b'{"id": 1}\n{"id": \n', NDJSON, "cannot read the request body as jsonl"),
        ("bad%20name", good, CSV, "dataset name 'bad name' is not allowed"),
        ("-dash", good, CSV, "dataset name '-dash' is not allowed"),
        ("fresh", b"", CSV, "the request body is empty"),
    ]
    for name, data, content_type, message in cases:
        response = post_data(client, name, data, content_type)
        assert_error(response, 400, "INVALID_INPUT", message)
    assert state(ws) == before
    assert [d["name"] for d in client.get("/v1/datasets").json()] == ["sales"]


# -- reading --------------------------------------------------------------------------------


@embedded
def test_list_versions_and_get(ws: Workspace, client: TestClient) -> None:
    for n in (10, 20, 30):
        ws.datasets.ingest(sales(n), name="sales")
    ws.datasets.ingest(sales(5), name="other")

    listed = client.get("/v1/datasets").json()
    assert [(d["name"], d["latest_version"], d["version_count"]) for d in listed] == [
        ("other", 1, 1),
        ("sales", 3, 3),
    ]
    versions = client.get("/v1/datasets/sales/versions").json()
    assert [(v["version"], v["row_count"]) for v in versions] == [(1, 10), (2, 20), (3, 30)]
    for version, expected in [("1", 1), ("2", 2), ("latest", 3), ("v3", 3)]:
        got = client.get(f"/v1/datasets/sales/versions/{version}")
        assert got.status_code == 200
        assert got.json()["version"] == expected


NOT_FOUND: list[tuple[str, int, str, str]] = [
    ("/v1/datasets/nope/versions", 404, "NOT_FOUND", "dataset 'nope' does not exist"),
    ("/v1/datasets/nope/versions/1", 404, "NOT_FOUND", "dataset 'nope' does not exist"),
    ("/v1/datasets/sales/versions/99", 404, "NOT_FOUND", "has no version 99 (latest is 1)"),
    ("/v1/datasets/sales/versions/abc", 404, "NOT_FOUND", "has no version 'abc'"),
    ("/v1/datasets/sales/versions/0", 404, "NOT_FOUND", "has no version 0"),
    (
        "/v1/datasets/sales/versions/99999999999999999999",
        404,
        "NOT_FOUND",
        "has no version",
    ),
    ("/v1/datasets/bad%20name/versions", 400, "INVALID_INPUT", "is not allowed"),
    ("/v1/suites/nope", 404, "NOT_FOUND", "suite 'nope' does not exist"),
    ("/v1/suites/sales@7", 404, "NOT_FOUND", "suite 'sales@7' does not exist"),
    ("/v1/suites/sales@abc", 404, "NOT_FOUND", "suite 'sales' has no version 'abc'"),
]


@embedded
def test_unknown_things_are_404_and_bad_names_400(ws: Workspace, client: TestClient) -> None:
    ws.datasets.ingest(sales(), name="sales")
    ws.validation.infer_suite("sales@1")
    for path, status, code, message in NOT_FOUND:
        assert_error(client.get(path), status, code, message)


# -- suites, validations, quarantines, lineage -----------------------------------------------


def test_suites_validations_quarantines_and_lineage(ws: Workspace, client: TestClient) -> None:
    v1 = ws.datasets.ingest(sales(), name="sales")
    v2 = ws.datasets.ingest(broken(), name="sales")

    made = client.post("/v1/suites", json={"dataset": "sales@1"})
    assert made.status_code == 201, made.text
    suite = made.json()
    assert (suite["name"], suite["version"], suite["inferred_from"]) == ("sales", 1, v1.id)
    assert {"type": "unique", "column": "id"} in suite["expectations"]
    assert client.get("/v1/suites/sales").json() == suite
    assert client.get("/v1/suites/sales@1").json() == suite
    named = client.post("/v1/suites", json={"dataset": "sales@1", "name": "strict"}).json()
    assert named["name"] == "strict"
    assert [(s["name"], s["latest_version"]) for s in client.get("/v1/suites").json()] == [
        ("sales", 1),
        ("strict", 1),
    ]

    passed = client.post("/v1/validations", json={"dataset": "sales@1", "suite": "sales"})
    assert passed.status_code == 200
    assert passed.json()["success"] is True

    report = client.post("/v1/validations", json={"dataset": "sales@2", "suite": "sales"}).json()
    assert (report["success"], report["failed_checks"], report["failing_rows"]) == (False, 2, 4)
    failing = {c["message"]: c for c in report["checks"] if not c["success"]}
    assert set(failing) == {
        "amount: between 0 and 54.9: 3 of 120 rows fail",
        "city: in {LA, NY, SF}: 1 of 120 rows fail",
    }
    in_set = failing["city: in {LA, NY, SF}: 1 of 120 rows fail"]
    assert in_set["observed"] == {"unexpected": [{"value": "XX", "count": 1}]}
    assert in_set["sample"] == [{"_row": 10, "id": 10, "amount": 11.0, "city": "XX"}]

    before = state(ws)
    split = client.post("/v1/quarantines", json={"dataset": "sales@2", "suite": "sales"})
    assert split.status_code == 200, split.text
    result = split.json()
    assert (result["quarantined"]["dataset"], result["quarantined"]["version"]) == (
        "sales.quarantine",
        1,
    )
    assert (result["clean"]["version"], result["clean"]["row_count"]) == (3, 116)
    assert result["quarantined"]["row_count"] == 4
    assert result["report"]["failing_rows"] == 4
    after = state(ws)
    assert after[1] == before[1] + 2
    again = client.post("/v1/quarantines", json={"dataset": "sales@2", "suite": "sales"})
    assert again.json() == result
    assert state(ws) == after

    edges = client.get(f"/v1/lineage/dataset_version/{result['quarantined']['id']}").json()
    assert edges == [
        {
            "src": {"type": "dataset_version", "id": v2.id},
            "dst": {"type": "dataset_version", "id": result["quarantined"]["id"]},
            "relation": "quarantined",
        }
    ]
    down = client.get(
        f"/v1/lineage/dataset_version/{v1.id}", params={"direction": "downstream"}
    ).json()
    assert sorted(e["relation"] for e in down) == ["inferred", "inferred"]


BAD_REQUESTS: list[tuple[str, str, dict[str, Any] | None, int, str, str]] = [
    ("post", "/v1/suites", {"dataset": "nope@1"}, 404, "NOT_FOUND", "'nope' does not exist"),
    ("post", "/v1/suites", {"dataset": "sales@9"}, 404, "NOT_FOUND", "has no version 9"),
    ("post", "/v1/suites", {}, 422, "SCHEMA_MISMATCH", "dataset: Field required"),
    (
        "post",
        "/v1/suites",
        {"dataset": "sales@1", "name": "bad name"},
        400,
        "INVALID_INPUT",
        "suite name 'bad name' is not allowed",
    ),
    (
        "post",
        "/v1/validations",
        {"dataset": "sales@1", "suite": "nope"},
        404,
        "NOT_FOUND",
        "suite 'nope' does not exist",
    ),
    (
        "post",
        "/v1/validations",
        {"dataset": "sales@abc", "suite": "sales"},
        404,
        "NOT_FOUND",
        "no version 'abc'",
    ),
    ("post", "/v1/validations", {"dataset": "sales@1"}, 422, "SCHEMA_MISMATCH", "suite"),
    (
        "post",
        "/v1/quarantines",
        {"dataset": "nope", "suite": "sales"},
        404,
        "NOT_FOUND",
        "dataset 'nope' does not exist",
    ),
    (
        "get",
        "/v1/lineage/dataset_version/x",
        None,
        422,
        "SCHEMA_MISMATCH",
        "direction",
    ),
]


@embedded
def test_request_errors(ws: Workspace, client: TestClient) -> None:
    ws.datasets.ingest(sales(), name="sales")
    ws.validation.infer_suite("sales@1")
    before = state(ws)
    for method, path, payload, status, code, message in BAD_REQUESTS:
        if method == "post":
            response = client.post(path, json=payload)
        else:
            response = client.get(path, params={"direction": "sideways"})
        assert_error(response, status, code, message)
    assert state(ws) == before


@embedded
def test_a_body_that_is_not_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/v1/validations", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "INVALID_INPUT", "the request body is not valid JSON")
