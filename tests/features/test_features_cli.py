"""``mloop features apply/list/show``, as a user types them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from feature_helpers import STREAM, live_view
from helpers import run_cli
from mloop.features import Entity, FeatureView
from mloop.workspace import Workspace

DEFINITIONS = """
from mloop.features import Entity, FeatureView

customer = Entity("customer", join_keys={"customer_id": "integer"})
spending = FeatureView(
    "spending",
    entities=[customer],
    source="tx",
    timestamp_column="ts",
    features=["spend"],
    ttl="7d",
    owner="ana",
)
"""


def test_apply_list_show(sqlite_ws: Workspace, tmp_path: Path) -> None:
    ws = sqlite_ws
    ws.datasets.write_version(
        "tx",
        pl.DataFrame(
            {"customer_id": [1], "ts": [datetime(2024, 1, 1)], "spend": [1.0], "n": [1]}
        ).to_arrow(),
    )
    path = tmp_path / "features.py"
    path.write_text(DEFINITIONS)
    code, out, err = run_cli(ws, "features", "apply", str(path))
    assert code == 0, err
    assert "entity customer@1" in out
    assert "feature view spending@1" in out
    code, out, _ = run_cli(ws, "features", "list")
    assert code == 0
    assert "spending@1" in out
    assert "customer@1" in out
    code, out, _ = run_cli(ws, "features", "show", "spending", "--json")
    shown = json.loads(out)
    assert shown["ref"] == "spending@1"
    assert shown["features"] == [{"name": "spend", "dtype": "float"}]
    code, out, _ = run_cli(ws, "features", "show", "spending")
    assert code == 0
    assert "spend" in out
    assert "604800s" in out

    # an incompatible change (the view's entities) is refused unless forced
    moved = DEFINITIONS.replace("entities=[customer]", 'entities=["client"]')
    path.write_text(moved + 'client = Entity("client", join_keys={"customer_id": "integer"})\n')
    code, _, err = run_cli(ws, "features", "apply", str(path))
    assert code != 0
    assert "entities change from ['customer'] to ['client']" in err
    code, out, err = run_cli(ws, "features", "apply", str(path), "--force", "--json")
    assert code == 0, err
    assert sorted(d["ref"] for d in json.loads(out)) == ["client@1", "customer@1", "spending@2"]
    # removing a feature no model uses is allowed
    path.write_text(DEFINITIONS.replace('features=["spend"]', 'features=["n"]'))
    code, out, err = run_cli(ws, "features", "apply", str(path), "--force")
    assert code == 0, err
    assert "feature view spending@3" in out


def test_apply_bad_files(sqlite_ws: Workspace, tmp_path: Path) -> None:
    code, _, err = run_cli(sqlite_ws, "features", "apply", str(tmp_path / "none.py"))
    assert code != 0
    assert "does not exist" in err
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    code, _, err = run_cli(sqlite_ws, "features", "apply", str(empty))
    assert code != 0
    assert "defines no Entity, FeatureView or OnDemandFeatureView" in err
    code, _, err = run_cli(sqlite_ws, "features", "show", "nope")
    assert code != 0
    assert "does not exist" in err


# -- materialize, status, online, on-demand views, streams -----------------------------------

DRIVER = Entity("driver", join_keys={"driver_id": "integer"})
STATS_DEFINITIONS = """
import polars as pl
from mloop.features import Entity, FeatureView, OnDemandFeatureView

driver = Entity("driver", join_keys={"driver_id": "integer"})
stats = FeatureView(
    "stats", entities=[driver], source="ds", timestamp_column="ts", features=["rate", "trips"],
    ttl="1h",
)
fare = OnDemandFeatureView(
    "fare",
    request={"distance": "float"},
    sources=["stats:rate"],
    features=["price"],
    transform={"price": pl.col("distance") * pl.col("rate")},
)
"""


def _now() -> datetime:
    """Now as naive UTC, taken when called (online reads compare with the wall clock)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _write(ws: Workspace, rows: list[tuple[int, datetime, Any, int]], *, append: bool) -> None:
    frame = pl.DataFrame(
        {
            "driver_id": [r[0] for r in rows],
            "ts": [r[1] for r in rows],
            "rate": [r[2] for r in rows],
            "trips": [r[3] for r in rows],
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us")))
    if append:
        ws.datasets.append_rows("ds", frame.to_arrow())
    else:
        ws.datasets.write_version("ds", frame.to_arrow())


def _stats(ws: Workspace, tmp_path: Path) -> list[tuple[int, datetime, Any, int]]:
    now = _now()
    rows: list[tuple[int, datetime, Any, int]] = [
        (1, now - timedelta(minutes=50), 0.5, 3),
        (1, now - timedelta(minutes=5), 0.7, 4),  # the latest of driver 1
        (2, now - timedelta(minutes=30), 0.9, 8),
        (3, now - timedelta(hours=3), 0.1, 1),  # older than the 1 h TTL when read
    ]
    _write(ws, rows, append=False)
    path = tmp_path / "stats.py"
    path.write_text(STATS_DEFINITIONS)
    code, out, err = run_cli(ws, "features", "apply", str(path))
    assert code == 0, err
    assert "on-demand view fare@1" in out
    return rows


def test_materialize_status_and_online(sqlite_ws: Workspace, tmp_path: Path) -> None:
    ws = sqlite_ws
    rows = _stats(ws, tmp_path)
    code, out, err = run_cli(ws, "features", "materialize", "stats")
    assert code == 0, err
    assert "stats 3/3 entities" in " ".join(err.replace("━", " ").split())  # the progress bar
    assert "stats@1" in out
    [line] = [ln for ln in out.splitlines() if "stats@1" in ln]
    assert [c.strip() for c in line.split("│")[2:5]] == ["range", "4", "3"]  # rows read, written

    code, out, err = run_cli(ws, "features", "status", "--json")
    assert code == 0, err
    [status] = json.loads(out)
    assert status["view"] == "stats@1"
    assert status["last_materialization"] == "succeeded"
    newest = max(r[1] for r in rows).replace(tzinfo=UTC)
    assert datetime.fromisoformat(status["newest_event"]) == newest
    assert status["fresh"] is True
    code, out, _ = run_cli(ws, "features", "status")
    assert code == 0
    [line] = [ln for ln in out.splitlines() if "stats" in ln]
    assert "succeeded" in line
    assert "yes" in line
    assert "│ 5m " in line  # the newest event is 5 minutes old

    code, out, err = run_cli(
        ws, "features", "online", "stats:rate", "stats:trips",
        "--entity", "driver_id=1", "--entity", "driver_id=3", "--entity", "driver_id=99",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    got = json.loads(out)
    assert got["rows"] == [
        {"driver_id": 1, "rate": 0.7, "trips": 4},
        {"driver_id": 3, "rate": None, "trips": None},
        {"driver_id": 99, "rate": None, "trips": None},
    ]
    assert [s["rate"] for s in got["statuses"]] == ["present", "expired", "missing"]
    code, out, err = run_cli(
        ws, "features", "online", "stats:rate", "fare:price",
        "-e", "driver_id=2", "-e", "distance=2", "-e", "driver_id=3", "-e", "distance=1.5",
    )  # fmt: skip
    assert code == 0, err
    [header] = [ln for ln in out.splitlines() if "┃" in ln]
    assert [c.strip() for c in header.split("┃")[1:-1]] == ["driver_id", "rate", "price"]
    lines = [[c.strip() for c in ln.split("│")[1:-1]] for ln in out.splitlines() if "│" in ln]
    assert lines[0][:2] == ["2", "0.9"]
    assert float(lines[0][2]) == pytest.approx(1.8)  # distance 2 × rate 0.9
    assert lines[1][:2] == ["3", "null (expired)"]

    # two new rows: an incremental run reads only them
    later = _now()
    _write(ws, [(2, later - timedelta(minutes=1), 1.5, 9), (7, later, 2.5, 1)], append=True)
    code, out, err = run_cli(ws, "features", "materialize", "--incremental", "--json")
    assert code == 0, err
    [run] = json.loads(out)
    assert (run["mode"], run["rows_read"], run["entities_written"]) == ("incremental", 2, 2)
    code, out, _ = run_cli(ws, "features", "online", "stats:trips", "-e", "driver_id=7", "--json")
    assert json.loads(out)["rows"] == [{"driver_id": 7, "trips": 1}]


def test_materialize_failures_exit_non_zero(sqlite_ws: Workspace, tmp_path: Path) -> None:
    ws = sqlite_ws
    _stats(ws, tmp_path)
    for args, message in [
        (["nope"], "feature view 'nope' does not exist"),
        (["--start", "yesterday"], "invalid start 'yesterday'"),
        (["--start", "2024-02-01", "--end", "2024-01-01"], "is after end"),
        (["--incremental", "--start", "2024-01-01"], "starts where the last ended"),
    ]:
        code, _, err = run_cli(ws, "features", "materialize", *args)
        assert code != 0, args
        assert err.startswith("error:")
        assert message in err
    assert ws.features.materializations() == []
    # the source changes under the view: its feature no longer has the declared type
    _write(ws, [(1, _now(), "fast", 1)], append=False)
    code, out, err = run_cli(ws, "features", "materialize", "stats")
    assert code != 0
    assert err.startswith("error:")
    assert "does not have its declared type" in err
    assert "stats@1" not in out  # no result table
    [failed] = ws.features.materializations("stats")
    assert failed.status == "failed"
    code, out, _ = run_cli(ws, "features", "status")
    assert "failed" in out
    assert "never" not in out


def test_online_cli_types_keys_and_refuses_bad_input(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    now = _now()
    ws.datasets.write_version(
        "cities",
        pl.DataFrame(
            {"city_id": ["007", "7"], "ts": [now, now], "pop": [10, 20]},
        ).to_arrow(),
    )
    city = Entity("city", join_keys={"city_id": "string"})
    view = FeatureView(
        "census", entities=[city], source="cities", timestamp_column="ts", features=["pop"]
    )
    ws.features.apply([city, view])
    ws.features.materialize()
    code, out, err = run_cli(
        ws, "features", "online", "census:pop", "-e", "city_id=007", "-e", "city_id=7", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["rows"] == [
        {"city_id": "007", "pop": 10},  # a string key stays text, its zeros kept
        {"city_id": "7", "pop": 20},
    ]
    for args, message in [
        (["census:pop", "-e", "city_id"], "--entity 'city_id': use KEY=VALUE"),
        (["census:nope", "-e", "city_id=7"], "has no feature 'nope'"),
        (["nope:pop", "-e", "city_id=7"], "unknown feature view 'nope'"),
        (["census:pop", "-e", "town=7"], "has no join key 'city_id'"),
        (["census"], "Missing option '--entity'"),
    ]:
        code, _, err = run_cli(ws, "features", "online", *args)
        assert code != 0, args
        assert message in err, err


def test_list_and_show_cover_ondemand_views_and_status(
    sqlite_ws: Workspace, tmp_path: Path
) -> None:
    ws = sqlite_ws
    _stats(ws, tmp_path)
    code, out, err = run_cli(ws, "features", "list")
    assert code == 0, err
    assert "on-demand" in out
    [line] = [ln for ln in out.splitlines() if "fare@1" in ln]
    assert "distance:" in line
    assert "stats:rate" in line
    assert "polars" in line
    code, out, _ = run_cli(ws, "features", "list", "--json")
    listed = json.loads(out)
    assert [d["ref"] for d in listed["ondemand"]] == ["fare@1"]
    assert listed["ondemand"][0]["kind"] == "ondemand_view"

    code, out, err = run_cli(ws, "features", "show", "fare")
    assert code == 0, err
    assert "on-demand view" in out
    assert "request distance: float" in out
    assert "transform polars" in out
    assert "price" in out
    code, out, _ = run_cli(ws, "features", "show", "stats")
    assert "transform none" in out
    assert "stream none" in out
    assert "not materialized into" in out
    code, out, _ = run_cli(ws, "features", "show", "stats", "--json")
    assert json.loads(out)["status"]["last_materialization"] is None

    ws.features.materialize()
    code, out, _ = run_cli(ws, "features", "show", "stats")
    assert "last materialization succeeded" in out
    assert "fresh yes" in out
    code, out, _ = run_cli(ws, "features", "show", "stats", "--json")
    shown = json.loads(out)
    assert shown["status"]["last_materialization"] == "succeeded"
    assert shown["kind"] == "feature_view"


def test_materialize_stream(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    events, live = live_view(ws, DRIVER)
    uri = STREAM
    still = live.model_copy(update={"name": "still", "stream": None})
    ws.features.apply([DRIVER, live, still])
    code, out, _ = run_cli(ws, "features", "show", "live")
    assert f"stream {uri}" in out
    assert "transform polars" in out

    ws.streams.produce(uri, events(range(3, 9), 100.0))
    code, out, err = run_cli(
        ws, "features", "materialize-stream", "live",
        "--max-events", "6", "--batch-size", "3", "--max-wait", "0.2",
    )  # fmt: skip
    assert code == 0, err
    assert "batch 1: 3 events, 3 written · 3 entities materialized" in err
    assert "batch 2: 6 events, 6 written" in err
    summary = {
        cells[0]: cells[1]
        for ln in out.splitlines()
        if len(cells := [c.strip() for c in ln.split("│")[1:-1]]) == 2
    }
    assert summary["events"] == "6"
    assert summary["materializations"] == "2"
    assert summary["stopped"] == "max-events"
    code, out, _ = run_cli(
        ws, "features", "online", "live:rate",
        "-e", "driver_id=0", "-e", "driver_id=1", "-e", "driver_id=2", "--json",
    )  # fmt: skip
    assert [r["rate"] for r in json.loads(out)["rows"]] == [106.0, 107.0, 108.0]

    ws.streams.produce(uri, events(range(9, 10), 200.0))
    code, out, err = run_cli(
        ws, "features", "materialize-stream", "live", "--idle-exit", "0.3", "--max-wait", "0.1",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    done = json.loads(out)
    assert (done["events"], done["entities_written"], done["stopped"]) == (1, 1, "idle")

    code, _, err = run_cli(ws, "features", "materialize-stream", "still", "--max-events", "1")
    assert code != 0
    assert "has no stream" in err
