"""PII never appears raw: not in versions, profiles, validation reports, quarantine, the audit
log, lineage, source states, logs or error messages — whatever door the rows came through."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mloop.api import create_app
from mloop.core.errors import InvalidInput, MloopError
from mloop.storage import tables
from mloop.workspace import Workspace

EMAILS = ["alice.liddell@example.com", "bob.builder@example.org", "carol.danvers@example.net"]
PHONES = ["+1 555 010 7788", "+44 20 7946 0018", "+33 1 70 36 39 50"]
SSNS = ["078-05-1120", "219-09-9999", "457-55-5462"]
RAW = [*EMAILS, *PHONES, *SSNS]
POLICY = {"email": "hash", "phone": "mask", "ssn": "drop"}


def people(n: int = 30, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(start, start + n)),
            "email": [EMAILS[i % 3] for i in range(start, start + n)],
            "phone": [PHONES[i % 3] for i in range(start, start + n)],
            "ssn": [SSNS[i % 3] for i in range(start, start + n)],
            "amount": [float(i % 10) + 1 for i in range(start, start + n)],
        }
    )


def everything_stored(ws: Workspace) -> str:
    """The metadata database dumped whole, and every blob of the artifact store, Parquet decoded
    (its pages are compressed: a raw search of the bytes would prove nothing)."""
    with ws.db.read() as conn:
        parts = [
            json.dumps([list(map(str, r)) for r in conn.execute(sa.select(t)).all()])
            for t in tables.metadata.sorted_tables
        ]
    for path in ws.artifacts.root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if data[:4] == b"PAR1":
            parts.append(json.dumps(pq.read_table(io.BytesIO(data)).to_pylist(), default=str))
        else:
            parts.append(data.decode("utf-8", "replace"))
    return "\n".join(parts)


def assert_no_raw(*texts: str) -> None:
    for text in texts:
        for secret in RAW:
            assert secret not in text, f"raw {secret!r} found"


def test_pii_never_appears_raw_anywhere(
    ws: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []

    def refused(call: Any, *args: Any, **kwargs: Any) -> None:
        with pytest.raises(MloopError) as e:
            call(*args, **kwargs)
        messages.append(str(e.value))
        messages.append(json.dumps(e.value.to_dict(), default=str))
        # the chain too: a cause quoting the row would print under the message
        cause = e.value.__cause__ or e.value.__context__
        messages.append(repr(cause) if not e.value.__suppress_context__ else "")

    # 1. declared at ingest: even the first version is protected
    people().write_csv(tmp_path / "people.csv")
    v1 = ws.datasets.ingest(tmp_path / "people.csv", name="people", pii=POLICY)
    assert ws.datasets.policy("people") == {"pii": POLICY}
    data = ws.datasets.load(v1)
    assert data.column("ssn").null_count == 30
    assert data.column("phone").to_pylist()[0] == "***********7788"
    hashed = data.column("email").to_pylist()
    assert all(len(h) == 64 for h in hashed)
    assert len(set(hashed)) == 3  # equal values, equal hashes: joins still work

    # 2. appended as JSON rows, a file, and rows read from a SQL table
    ws.datasets.append_rows("people", people(3, start=30).to_dicts())
    people(3, start=33).write_parquet(tmp_path / "more.parquet")
    ws.datasets.ingest(tmp_path / "more.parquet", name="people", append=True)
    db = tmp_path / "src.db"
    people(6, start=40).write_database("src", f"sqlite:///{db}", engine="sqlalchemy")
    v4 = ws.datasets.ingest_sql(f"sqlite:///{db}", name="people", table="src", cursor="id")
    assert v4.row_count == 42
    assert ws.datasets.load(v4).column("email").to_pylist()[:3] == hashed[:3]

    # 3. validation: a suite from the protected version, a raw file with failing rows; the
    # report's samples and observed values hold no raw value
    suite = ws.validation.infer_suite("people@1")
    bad = people(6, start=50).with_columns(pl.lit(-100.0).alias("amount"))
    bad.write_csv(tmp_path / "bad.csv")
    report = ws.validation.validate(tmp_path / "bad.csv", suite.name)
    assert not report.success
    assert any(c.sample for c in report.checks)
    report_text = report.model_dump_json()
    assert_no_raw(report_text)
    assert_no_raw(ws.validation.validate(bad, suite.name).model_dump_json())

    # 4. quarantine: failing rows of a version go to people.quarantine, protected; passing rows
    # to a validated version whose hashes are the same (not hashed twice)
    failing = ws.datasets.append_rows("people", bad.to_dicts())
    result = ws.validation.quarantine(failing.ref, suite.name)
    assert result.quarantined is not None
    assert result.clean is not None
    assert ws.datasets.policy("people.quarantine") == {"pii": POLICY}
    quarantined = ws.datasets.load(result.quarantined)
    assert quarantined.num_rows >= 6  # the inferred id range fails later ids too
    assert ws.datasets.load(result.clean).column("email").to_pylist()[:3] == hashed[:3]
    assert_no_raw(result.model_dump_json())

    # 5. bad input into the PII dataset: refused with a reason that quotes no value
    (tmp_path / "ragged.csv").write_text(
        "id,email,phone,ssn,amount\n1,a@b.c,1,2,3\n2,alice.liddell@example.com,+1 555 010 7788,"
        "078-05-1120,4,EXTRA\n"
    )
    refused(ws.datasets.ingest, tmp_path / "ragged.csv", name="people", append=True)
    assert "Expected 5 columns, got 6" in messages[-3]
    (tmp_path / "typed.csv").write_text(
        "id,email,phone,ssn,amount\n1,x,y,z,1.5\nbob.builder@example.org,x,y,z,2\n"
    )
    refused(ws.datasets.ingest, tmp_path / "typed.csv", name="people", append=True)
    refused(ws.datasets.append_rows, "people", [{"id": 1, "email": 5, "phone": "x"}])
    refused(
        ws.datasets.append_rows,
        "people",
        [
            {
                "id": "carol.danvers@example.net",
                "email": "x",
                "phone": "+1 555 010 7788",
                "ssn": "078-05-1120",
                "amount": 1.0,
            }
        ],
    )
    refused(ws.datasets.ingest, [{"id": 1}, {"id": "bob.builder@example.org"}], name="people")

    # 6. the REST face: its errors and logs
    with TestClient(create_app(ws, log_predictions=False)) as client:
        r = client.post(
            "/v1/datasets/people/rows",
            json=[{"id": "alice.liddell@example.com", "email": "x", "phone": "y", "ssn": "z"}],
        )
        assert r.status_code == 422
        messages.append(r.text)
        r = client.post(
            "/v1/datasets/people/versions",
            content=b"id,email\n1,alice.liddell@example.com,extra\n",
            headers={"content-type": "text/csv"},
        )
        assert r.status_code == 400
        messages.append(r.text)
        ok = client.post("/v1/datasets/people/rows", json=people(2, start=90).to_dicts())
        assert ok.status_code == 201
        messages.append(ok.text)
        for path in ("/v1/datasets/people/versions", "/v1/datasets/people.quarantine/versions"):
            messages.append(client.get(path).text)

    assert_no_raw(everything_stored(ws), *messages, caplog.text)


def test_without_a_policy_errors_keep_their_detail(sqlite_ws: Workspace, tmp_path: Path) -> None:
    """Redaction is for datasets with PII columns: elsewhere a parser's message stays whole."""
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(InvalidInput, match="Expected 2 columns, got 3: 3,4,5"):
        sqlite_ws.datasets.ingest(tmp_path / "ragged.csv", name="plain")


def test_the_policy_key_is_never_returned(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    public = ws.datasets.set_policy("p", {"email": "hash"})
    stored = ws.datasets._stored_policy("p")
    assert stored is not None
    assert public == ws.datasets.policy("p") == {"pii": {"email": "hash"}}
    v = ws.datasets.write_version("p", pa.table({"email": EMAILS}))
    assert stored["key"] not in v.model_dump_json()
    assert all(stored["key"] not in json.dumps(r.detail) for r in ws.audit.list())
    # adding a column keeps the key: earlier hashes stay comparable
    ws.datasets.set_policy("p", {"phone": "mask"})
    again = ws.datasets._stored_policy("p")
    assert again is not None
    assert again["key"] == stored["key"]
    assert again["pii"] == {"email": "hash", "phone": "mask"}


def test_hashing_twice_changes_nothing(sqlite_ws: Workspace) -> None:
    from mloop.data import apply_policy

    policy = {"pii": {"email": "hash", "phone": "mask", "ssn": "drop"}, "key": "ab" * 32}
    table = pa.table({"email": EMAILS, "phone": PHONES, "ssn": SSNS})
    once = apply_policy(table, policy)
    assert apply_policy(once, policy).equals(once)


def test_quarantined_messages_keep_no_raw_pii(sqlite_ws: Workspace) -> None:
    """A stream's quarantine keeps each refused message and the reason: into ``X.quarantine``
    of a PII dataset, the message's PII fields are protected like the columns, a message that is
    not a JSON object is not kept, and reasons lose the values they quote."""
    ws = sqlite_ws
    v = ws.datasets.ingest(people(3).to_arrow(), name="people", pii=POLICY)
    good = json.dumps({"id": 7, "email": EMAILS[0], "phone": PHONES[0], "ssn": SSNS[0]})
    broken = '{"id": 8, "email": "bob.builder@example.org", "phone": '
    rejected = pa.table(
        {
            "_mloop_kind": ["validation", "parse"],
            "_mloop_reason": [
                "amount: between 0 and 10",
                "CSV conversion error to int64: invalid value 'carol.danvers@example.net'",
            ],
            "_mloop_payload": [good, broken],
            "_mloop_offset": [1, 2],
        }
    )
    q = ws.datasets.append("people.quarantine", rejected, kind="quarantine")
    stored = ws.datasets.load(q).to_pylist()
    kept = json.loads(stored[0]["_mloop_payload"])
    assert kept["id"] == 7
    assert kept["email"] == ws.datasets.load(v).column("email").to_pylist()[0]  # same hash
    assert kept["phone"] == "***********7788"
    assert kept["ssn"] is None
    assert stored[1]["_mloop_payload"] is None
    assert stored[1]["_mloop_reason"] == "CSV conversion error to int64: invalid value (redacted)"
    assert_no_raw(everything_stored(ws))


def test_a_quarantine_takes_its_datasets_policy_as_it_is_now(sqlite_ws: Workspace) -> None:
    """``X.quarantine`` exists before ``X`` declares PII columns: rows written to it later are
    protected by ``X``'s current policy (merged into the quarantine's at every write)."""
    ws = sqlite_ws
    ws.datasets.ingest(people(3).to_arrow(), name="people")
    first = pa.table({"_mloop_reason": ["bad"], "email": [EMAILS[0]], "note": ["x"]})
    ws.datasets.append("people.quarantine", first, kind="quarantine")
    assert ws.datasets.policy("people.quarantine") is None

    ws.datasets.set_policy("people", {"email": "hash"})
    rejected = pa.table({"_mloop_reason": ["bad"], "email": [EMAILS[1]], "note": ["y"]})
    q = ws.datasets.append("people.quarantine", rejected, kind="quarantine")
    assert ws.datasets.policy("people.quarantine") == {"pii": {"email": "hash"}}
    email = ws.datasets.load(q).column("email").to_pylist()[-1]
    assert len(email) == 64
    assert email not in EMAILS

    # a later change of X reaches the quarantine too, together with what it declared itself
    ws.datasets.set_policy("people.quarantine", {"note": "mask"})
    ws.datasets.set_policy("people", {"phone": "drop"})
    ws.datasets.append(
        "people.quarantine",
        pa.table({"_mloop_reason": ["bad"], "email": [EMAILS[2]], "note": ["zzzzzz"]}),
    )
    assert ws.datasets.policy("people.quarantine") == {
        "pii": {"email": "hash", "note": "mask", "phone": "drop"}
    }
    last = ws.datasets.load("people.quarantine").to_pylist()[-1]
    assert last["email"] not in EMAILS
    assert last["note"] == "**zzzz"
