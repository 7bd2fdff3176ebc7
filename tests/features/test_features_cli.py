"""``mloop features apply/list/show``, as a user types them."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl

from helpers import run_cli
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

    path.write_text(DEFINITIONS.replace('features=["spend"]', 'features=["n"]'))
    code, _, err = run_cli(ws, "features", "apply", str(path))
    assert code != 0
    assert "feature 'spend' is removed" in err
    code, out, err = run_cli(ws, "features", "apply", str(path), "--force", "--json")
    assert code == 0, err
    assert [d["ref"] for d in json.loads(out)] == ["customer@1", "spending@2"]


def test_apply_bad_files(sqlite_ws: Workspace, tmp_path: Path) -> None:
    code, _, err = run_cli(sqlite_ws, "features", "apply", str(tmp_path / "none.py"))
    assert code != 0
    assert "does not exist" in err
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    code, _, err = run_cli(sqlite_ws, "features", "apply", str(empty))
    assert code != 0
    assert "defines no Entity or FeatureView" in err
    code, _, err = run_cli(sqlite_ws, "features", "show", "nope")
    assert code != 0
    assert "does not exist" in err
