"""Suites as YAML and reports through the faces: ``mloop data suite --yaml / suite-apply /
suite-export / validate DATA SUITE --json --html`` and the REST routes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from mloop.api import create_app
from mloop.cli import app
from mloop.data import Suite
from mloop.workspace import Workspace

Run = Callable[..., Result]
embedded = pytest.mark.parametrize("backend", ["sqlite"])


def sales(n: int = 120) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "sku": [f"AB-{i:04d}" for i in range(n)],
            "amount": [float(i % 50) + 1.0 for i in range(n)],
            "qty": [i % 3 + 1 for i in range(n)],
            "city": [("NY", "LA", "SF")[i % 3] for i in range(n)],
        }
    ).with_columns(total=pl.col("amount") * pl.col("qty"))


def broken() -> pl.DataFrame:
    """``sales()`` with row 0 over the range, row 1 a bad sku, row 2 a total that does not
    add up (and an unknown city)."""
    rows = sales().to_dicts()
    rows[0]["amount"], rows[0]["total"] = 500.0, 500.0
    rows[1]["sku"] = "zz"
    rows[2]["total"], rows[2]["city"] = -1.0, "XX"
    return pl.DataFrame(rows, schema=sales().schema)


EDITS = """\
- {type: regex, column: sku, pattern: '^AB-\\d{4}$'}
- {type: sql, expression: amount * qty = total}
- {type: in_set, column: city, values: [NY, LA], severity: warn}
"""


@pytest.fixture
def cli(ws: Workspace, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("MLOOP_DATABASE_URL", database_url)
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, ["--workspace", str(ws.home), "data", *args])

    return run


@pytest.fixture
def client(ws: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(ws, log_predictions=False)) as c:
        yield c


def text(result: Result) -> str:
    return " ".join(result.output.split())


def squeezed(value: str) -> str:
    """Without any whitespace: Rich wraps a long path wherever the terminal width falls."""
    return "".join(value.split())


def error_line(result: Result) -> str:
    return " ".join(result.stderr.split())


def suite_count(ws: Workspace) -> int:
    return sum(s["latest_version"] for s in ws.validation.list_suites())


# -- CLI ----------------------------------------------------------------------------------------


def test_infer_to_yaml_edit_apply_and_validate(ws: Workspace, cli: Run, tmp_path: Path) -> None:
    ws.datasets.ingest(sales(), name="sales")
    ws.datasets.ingest(broken(), name="sales")
    path = tmp_path / "sales.yaml"

    inferred = cli("suite", "sales@1", "--yaml", str(path))
    assert inferred.exit_code == 0, inferred.output
    assert "written to" in text(inferred)
    assert squeezed(f"mloop data suite-apply {path}") in squeezed(inferred.output)
    assert suite_count(ws) == 0  # written for editing, not stored
    doc = yaml.safe_load(path.read_text())
    assert doc["name"] == "sales"
    assert {"type": "in_set", "column": "city", "values": ["LA", "NY", "SF"]} in doc["expectations"]

    # a person edits the file: drop the inferred city set, add three checks
    edited = path.read_text().replace("- {type: in_set, column: city, values: [LA, NY, SF]}\n", "")
    path.write_text(edited + EDITS)
    applied = cli("suite-apply", str(path))
    assert applied.exit_code == 0, applied.output
    assert "stored as sales@1" in text(applied)
    again = cli("suite-apply", str(path))
    assert "unchanged: same content as sales@1" in text(again)
    stored = ws.validation.get_suite("sales")
    assert stored.version == 1
    assert [e.type for e in stored.expectations[-3:]] == ["regex", "sql", "in_set"]

    exported = cli("suite-export", "sales")
    assert exported.exit_code == 0
    assert Suite.from_yaml(exported.stdout) == stored.model_copy(update={"version": None})

    passed = cli("validate", "sales@1", "sales")  # the suite as a positional argument
    assert passed.exit_code == 0, passed.output  # the city set leaves SF out: a warning
    assert "passed — 0 failed checks, 0 failing rows, 1 warnings" in text(passed)
    failing = cli("validate", "sales@2", "sales@1")
    assert failing.exit_code == 1
    for message in (
        "sku: matches /^AB-\\d{4}$/: 1 of 120 rows fail",
        "sql: amount * qty = total: 1 of 120 rows fail",
        "amount: between 0 and 54.9: 1 of 120 rows fail",
    ):
        assert message in text(failing)


@embedded
def test_validate_exit_codes_follow_severity(ws: Workspace, cli: Run, tmp_path: Path) -> None:
    ws.datasets.ingest(sales(), name="sales")
    ws.datasets.ingest(broken(), name="sales")
    warn_only = tmp_path / "warn.yaml"
    warn_only.write_text(
        "name: w\nexpectations:\n"
        "- {type: in_set, column: city, values: [NY, LA], severity: warn}\n"
        "- {type: not_null, column: id}\n"
    )
    result = cli("validate", "sales@1", str(warn_only))
    assert result.exit_code == 0, result.output
    assert "passed — 0 failed checks, 0 failing rows, 1 warnings" in text(result)
    assert "warn" in text(result)

    strict = tmp_path / "strict.yaml"
    strict.write_text("name: s\nexpectations:\n" + EDITS)
    failing = cli("validate", "sales@2", str(strict))
    assert failing.exit_code == 1
    out = text(failing)
    assert "FAILED — 2 failed checks, 2 failing rows, 1 warnings" in out
    assert "sku: matches /^AB-\\d{4}$/: 1 of 120 rows fail" in out
    assert "sql: amount * qty = total: 1 of 120 rows fail" in out

    # the same as --suite, as JSON, and a file against a suite file
    broken().write_parquet(tmp_path / "batch.parquet")
    report = json.loads(
        cli("validate", str(tmp_path / "batch.parquet"), "-s", str(strict), "--json").stdout
    )
    assert (report["success"], report["failed_checks"], report["warnings"]) == (False, 2, 1)
    assert {c["severity"] for c in report["checks"]} == {"error", "warn"}


@embedded
def test_the_html_report(ws: Workspace, cli: Run, tmp_path: Path) -> None:
    ws.datasets.ingest(broken(), name="sales")
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nexpectations:\n" + EDITS)
    page = tmp_path / "report.html"
    result = cli("validate", "sales@1", str(suite), "--html", str(page))
    assert result.exit_code == 1
    assert squeezed(f"HTML report → {page}") in squeezed(result.output)
    html = page.read_text()
    assert html.startswith("<!doctype html>")
    assert "sku: matches /^AB-\\d{4}$/: 1 of 120 rows fail" in html
    assert "sql: amount * qty = total: 1 of 120 rows fail" in html
    as_json = cli("validate", "sales@1", str(suite), "--html", str(page), "--json")
    assert json.loads(as_json.stdout)["failed_checks"] == 2  # --json and --html together


BAD_SUITES = [
    ("name: s\n  expectations: [", "invalid suite YAML at line 2"),
    ("name: s\nexpectations: [{type: nope, column: a}]", "Input tag 'nope' found using 'type'"),
    (
        "name: s\nexpectations: [{type: regex, column: sku, pattern: '(?!x)'}]",
        "bad regex '(?!x)'",
    ),
    ("name: s\nexpectations: [{type: sql, expression: 'amount >'}]", "bad SQL expression"),
]


@embedded
@pytest.mark.parametrize(("body", "message"), BAD_SUITES)
def test_bad_suite_files_are_one_error_line(
    ws: Workspace, cli: Run, tmp_path: Path, body: str, message: str
) -> None:
    ws.datasets.ingest(sales(), name="sales")
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    for args in (["suite-apply", str(path)], ["validate", "sales@1", str(path)]):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert error_line(result).startswith("error: ")
        assert message in error_line(result)
        assert "Traceback" not in result.output
    assert suite_count(ws) == 0


@embedded
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "sales@1"], "give the suite once"),
        (["validate", "sales@1", "sales", "--suite", "sales"], "give the suite once"),
        (["validate", "sales@1", "missing.yaml"], "suite file missing.yaml does not exist"),
        (["suite-apply", "missing.yaml"], "suite file missing.yaml does not exist"),
        (["suite-export", "nope"], "suite 'nope' does not exist"),
        (["suite", "sales@1", "--distribution", "chi2"], "--distribution is psi or ks"),
    ],
)
def test_cli_mistakes_exit_2(ws: Workspace, cli: Run, args: list[str], message: str) -> None:
    ws.datasets.ingest(sales(), name="sales")
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert message in error_line(result)


def test_a_file_against_a_suite_file_needs_no_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    broken().write_csv(tmp_path / "batch.csv")
    (tmp_path / "s.yaml").write_text("expectations:\n" + EDITS)
    result = CliRunner().invoke(app, ["data", "validate", "batch.csv", "s.yaml", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["suite"], report["dataset"], report["failed_checks"]) == ("s", "batch.csv", 2)
    assert not (tmp_path / ".mloop").exists()  # nothing created


@embedded
def test_suite_with_stored_distribution_stats(ws: Workspace, cli: Run, tmp_path: Path) -> None:
    ws.datasets.ingest(sales(), name="sales")
    path = tmp_path / "s.yaml"
    assert cli("suite", "sales@1", "--yaml", str(path), "--distribution", "ks").exit_code == 0
    loaded = Suite.from_yaml(path.read_text())
    drift = [e for e in loaded.expectations if e.type == "distribution"]
    assert {(e.column, e.method, e.severity) for e in drift} == {  # type: ignore[union-attr]
        ("amount", "ks", "warn"),
        ("qty", "ks", "warn"),
        ("total", "ks", "warn"),
        ("city", "psi", "warn"),
    }
    shifted = sales().with_columns(pl.col("qty") + 1, pl.col("total") * 2)
    shifted.write_parquet(tmp_path / "shifted.parquet")
    result = cli("validate", str(tmp_path / "shifted.parquet"), str(path), "--json")
    report = json.loads(result.stdout)
    warned = {c["column"] for c in report["checks"] if not c["success"] and c["severity"] == "warn"}
    assert {"qty", "total"} <= warned


# -- REST ---------------------------------------------------------------------------------------


def assert_error(response: Any, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert message in response.json()["message"], response.json()["message"]


@embedded
def test_put_a_yaml_or_json_suite_then_validate(ws: Workspace, client: TestClient) -> None:
    ws.datasets.ingest(sales(), name="sales")
    ws.datasets.ingest(broken(), name="sales")
    body = "expectations:\n" + EDITS
    put = client.put(
        "/v1/suites/strict", content=body, headers={"content-type": "application/yaml"}
    )
    assert put.status_code == 200, put.text
    assert (put.json()["name"], put.json()["version"]) == ("strict", 1)
    same = client.put("/v1/suites/strict", content=body, headers={"content-type": "text/yaml"})
    assert same.json()["version"] == 1
    as_json = {"expectations": [{"type": "regex", "column": "sku", "pattern": "^AB-"}]}
    second = client.put("/v1/suites/strict", json=as_json)
    assert second.json()["version"] == 2

    exported = client.get("/v1/suites/strict@1", params={"format": "yaml"})
    assert exported.headers["content-type"].startswith("application/yaml")
    assert Suite.from_yaml(exported.text).expectations == Suite.parse(put.json()).expectations
    assert client.get("/v1/suites/strict@1").json() == put.json()

    report = client.post("/v1/validations", json={"dataset": "sales@2", "suite": "strict@1"})
    assert report.status_code == 200
    assert (report.json()["failed_checks"], report.json()["warnings"]) == (2, 1)
    inline = client.post(
        "/v1/validations",
        json={"dataset": "sales@2", "suite": {"expectations": as_json["expectations"]}},
    ).json()
    assert (inline["suite"], inline["failed_checks"]) == ("inline", 1)
    from_yaml = client.post(
        "/v1/validations", json={"dataset": "sales@2", "suite_yaml": body}
    ).json()
    assert from_yaml["failed_checks"] == 2

    page = client.post(
        "/v1/validations",
        params={"format": "html"},
        json={"dataset": "sales@2", "suite": "strict@1"},
    )
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "sql: amount * qty = total: 1 of 120 rows fail" in page.text

    split = client.post("/v1/quarantines", json={"dataset": "sales@2", "suite_yaml": body})
    assert split.status_code == 200, split.text
    quarantined = ws.datasets.load_polars(split.json()["quarantined"]["dataset"] + "@1")
    assert sorted(quarantined["_mloop_reason"].to_list()) == [
        "sku: matches /^AB-\\d{4}$/",
        "sql: amount * qty = total",
    ]


@embedded
@pytest.mark.parametrize(("body", "message"), BAD_SUITES)
def test_bad_suites_are_400_over_http(
    ws: Workspace, client: TestClient, body: str, message: str
) -> None:
    ws.datasets.ingest(sales(), name="sales")
    put = client.put("/v1/suites/s", content=body, headers={"content-type": "application/yaml"})
    assert_error(put, 400, "INVALID_INPUT", message)
    posted = client.post("/v1/validations", json={"dataset": "sales@1", "suite_yaml": body})
    assert_error(posted, 400, "INVALID_INPUT", message)
    assert suite_count(ws) == 0


@embedded
def test_other_suite_request_mistakes(ws: Workspace, client: TestClient, tmp_path: Path) -> None:
    ws.datasets.ingest(sales(), name="sales")
    secret = tmp_path / "server-side.yaml"
    secret.write_text("name: s\nexpectations: []\n")
    cases = [
        (
            client.put("/v1/suites/s", content=b"name: s", headers={"content-type": "text/plain"}),
            400,
            "INVALID_INPUT",
            "not a suite: send application/json or application/yaml",
        ),
        (
            client.put("/v1/suites/bad name", json={"expectations": []}),
            400,
            "INVALID_INPUT",
            "suite name 'bad name' is not allowed",
        ),
        (
            client.post("/v1/validations", json={"dataset": "sales@1", "suite": str(secret)}),
            400,
            "INVALID_INPUT",
            "suite name",  # a path is a name to look up, never a file the server reads
        ),
        (
            client.post(
                "/v1/validations",
                json={"dataset": "sales@1", "suite": "s", "suite_yaml": "expectations: []"},
            ),
            422,
            "SCHEMA_MISMATCH",
            "give the suite once",
        ),
        (
            client.post(
                "/v1/validations",
                json={"dataset": "sales@1", "suite": {"expectations": [{"type": "x"}]}},
            ),
            400,
            "INVALID_INPUT",
            "Input tag 'x' found",
        ),
        (
            client.get("/v1/suites/s", params={"format": "xml"}),
            422,
            "SCHEMA_MISMATCH",
            "format",
        ),
    ]
    for response, status, code, message in cases:
        assert_error(response, status, code, message)
