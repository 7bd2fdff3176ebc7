"""Transforms: registered, versioned code over datasets; runs cached by transform version and
input versions; every failure refused with nothing written."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
import sqlalchemy as sa

from mloop import InvalidInput, NotFound, transform
from mloop.storage import tables
from mloop.workspace import Workspace

# tests whose subject is not the metadata backend run on SQLite only
embedded = pytest.mark.parametrize("backend", ["sqlite"])

LIMIT = 2


@transform(inputs=["raw"], output="big", description="rows with x above 1")
def big(raw: pl.DataFrame) -> pl.DataFrame:
    """Keep the big ones."""
    return raw.filter(pl.col("x") > 1)


def enrich(raw: pl.DataFrame, cities: pl.DataFrame) -> pl.DataFrame:
    return raw.join(cities, on="city", how="left").sort("x")


def arrow_kind(raw: pa.Table) -> pa.Table:
    return pa.table({"got": [type(raw).__name__], "rows": [raw.num_rows]})


def lazy_double(raw: pl.LazyFrame) -> pl.LazyFrame:
    return raw.select((pl.col("x") * 2).alias("x2"))


def boom(raw: pl.DataFrame) -> pl.DataFrame:
    raise ValueError("bad row 7")


def not_a_frame(raw: pl.DataFrame) -> list[int]:
    return [1, 2]


def nothing_left(raw: pl.DataFrame) -> pl.DataFrame:
    return raw.filter(pl.col("x") > 1000)


def uses_a_global(raw: pl.DataFrame) -> pl.DataFrame:
    return raw.head(LIMIT)


def imports_inside(raw: pl.DataFrame) -> pl.DataFrame:
    import math

    return raw.with_columns(pl.lit(math.pi).alias("pi"))


def two_frames(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    return a


def raw_frame() -> pl.DataFrame:
    return pl.DataFrame({"x": [1, 2, 3, 4], "city": ["NY", "LA", "NY", "SF"]})


def cities_frame() -> pl.DataFrame:
    return pl.DataFrame({"city": ["NY", "LA", "SF"], "state": ["NY", "CA", "CA"]})


@dataclass(frozen=True)
class State:
    files: frozenset[str]
    versions: int
    transforms: int
    runs: int
    edges: int


def state(ws: Workspace) -> State:
    root = ws.artifacts.root
    files = frozenset(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def count(table: sa.Table) -> int:
        with ws.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    return State(
        files=files,
        versions=count(tables.dataset_versions),
        transforms=count(tables.transforms),
        runs=count(tables.transform_runs),
        edges=count(tables.lineage_edges),
    )


@pytest.fixture
def raw(ws: Workspace) -> Workspace:
    ws.datasets.ingest(raw_frame(), name="raw")
    return ws


def load_function(path: Path, name: str) -> Callable[..., Any]:
    """A function of a module file, imported fresh (as the CLI does)."""
    module_name = f"transform_test_{abs(hash((str(path), path.read_text())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    function: Callable[..., Any] = getattr(module, name)
    return function


# -- registering and running -------------------------------------------------------------


def test_a_python_transform_writes_a_version_with_lineage(raw: Workspace) -> None:
    ws = raw
    registered = ws.transforms.register(big)
    assert (registered.ref, registered.kind) == ("big@1", "python")
    assert (registered.inputs, registered.output) == (["raw"], "big")
    assert registered.description == "rows with x above 1"
    assert "raw.filter" in registered.code

    result = ws.transforms.run("big")
    assert not result.cached
    assert (result.transform, result.inputs, result.output) == ("big@1", ["raw@1"], "big@1")
    output = ws.datasets.get("big@1")
    assert output.id == result.output_id
    assert output.kind == "transform"
    assert ws.datasets.load_polars(output)["x"].to_list() == [2, 3, 4]

    raw_version = ws.datasets.get("raw@1")
    edges = {(e.src.type, e.src.id, e.relation) for e in ws.lineage.upstream(*_node(output))}
    assert ("dataset_version", raw_version.id, "transformed") in edges
    assert ("transform", registered.id, "produced") in edges

    with ws.db.read() as conn:
        row = conn.execute(sa.select(tables.transform_runs)).mappings().one()
    assert row["transform_id"] == registered.id
    assert row["output_version_id"] == output.id
    assert [i["id"] for i in row["inputs"]] == [raw_version.id]
    assert ws.transforms.runs("big") == [result]


def _node(version: Any) -> tuple[str, str]:
    return ("dataset_version", version.id)


def test_running_again_is_cached_computes_nothing_and_writes_nothing(
    raw: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = raw
    ws.transforms.register(big)
    first = ws.transforms.run("big")
    before = state(ws)

    def no_loading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cached run loaded its inputs")

    monkeypatch.setattr(ws.datasets, "load", no_loading)
    again = ws.transforms.run("big")
    assert again.cached
    assert (again.id, again.output_id, again.output) == (first.id, first.output_id, "big@1")
    assert state(ws) == before  # no version, no artifact file, no run row, no edge


def test_a_new_input_version_recomputes_and_a_pin_finds_the_old_run(raw: Workspace) -> None:
    ws = raw
    ws.transforms.register(big)
    first = ws.transforms.run("big")
    ws.datasets.ingest(raw_frame().with_columns(pl.col("x") + 10), name="raw")

    second = ws.transforms.run("big")
    assert not second.cached
    assert (second.inputs, second.output) == (["raw@2"], "big@2")
    assert ws.datasets.load_polars("big@2")["x"].to_list() == [11, 12, 13, 14]

    for pin in (1, "1", "raw@1"):
        pinned = ws.transforms.run("big", inputs={"raw": pin})
        assert pinned.cached
        assert pinned.output_id == first.output_id


def test_code_changes_make_versions_layout_does_not(raw: Workspace, tmp_path: Path) -> None:
    ws = raw
    path = tmp_path / "steps.py"

    def write(body: str) -> Callable[..., Any]:
        path.write_text(textwrap.dedent(body))
        return load_function(path, "scaled")

    v1 = ws.transforms.register(
        "scaled",
        write(
            """
            import polars as pl

            def scaled(raw):
                return raw.with_columns(pl.col("x") * 10)
            """
        ),
        inputs=["raw"],
        output="scaled",
    )
    run1 = ws.transforms.run("scaled")

    # comments, blank lines, a docstring, annotations and quotes: the same code
    same = ws.transforms.register(
        "scaled",
        write(
            '''
            import polars as pl


            def scaled(raw: pl.DataFrame) -> pl.DataFrame:
                """Ten times x."""
                # scale it
                return raw.with_columns(pl.col('x') * 10)  # by ten
            '''
        ),
        inputs=["raw"],
        output="scaled",
    )
    assert same.id == v1.id
    assert same.version == 1
    assert [t.version for t in ws.transforms.versions("scaled")] == [1]

    v2 = ws.transforms.register(
        "scaled",
        write(
            """
            import polars as pl

            def scaled(raw):
                return raw.with_columns(pl.col("x") * 100)
            """
        ),
        inputs=["raw"],
        output="scaled",
    )
    assert (v2.ref, v2.kind) == ("scaled@2", "python")
    assert ws.transforms.get("scaled").id == v2.id  # NAME is the latest version

    run2 = ws.transforms.run("scaled")
    assert not run2.cached
    assert (run2.transform, run2.output) == ("scaled@2", "scaled@2")
    assert ws.datasets.load_polars("scaled@2")["x"].to_list() == [100, 200, 300, 400]
    old = ws.transforms.run("scaled@1")
    assert old.cached
    assert old.id == run1.id


@embedded
def test_the_same_code_with_other_inputs_is_another_version(raw: Workspace) -> None:
    ws = raw
    ws.datasets.ingest(raw_frame(), name="raw2")
    first = ws.transforms.register("pick", big, inputs=["raw"], output="picked")
    other = ws.transforms.register("pick", big, inputs=["raw2"], output="picked")
    assert (first.version, other.version) == (1, 2)
    assert other.inputs == ["raw2"]


def test_a_sql_transform_sees_each_input_as_a_table(raw: Workspace) -> None:
    ws = raw
    ws.datasets.ingest(cities_frame(), name="cities")
    sql = """
        SELECT c.state, count(*) AS n, sum(r.x) AS total
        FROM raw r JOIN cities c USING (city)
        GROUP BY c.state ORDER BY c.state;
    """
    registered = ws.transforms.register("by_state", sql, inputs=["raw", "cities"], output="states")
    assert registered.kind == "sql"
    result = ws.transforms.run("by_state")
    assert result.inputs == ["raw@1", "cities@1"]
    frame = ws.datasets.load_polars("states")
    assert frame.to_dicts() == [
        {"state": "CA", "n": 2, "total": 6},
        {"state": "NY", "n": 2, "total": 4},
    ]
    assert ws.transforms.run("by_state").cached
    # whitespace and a trailing semicolon are not a change
    again = ws.transforms.register(
        "by_state", "  " + sql.strip().rstrip(";") + "\n", inputs=["raw", "cities"], output="states"
    )
    assert again.id == registered.id


@embedded
def test_python_frames_by_annotation_and_several_inputs(raw: Workspace) -> None:
    ws = raw
    ws.datasets.ingest(cities_frame(), name="cities")
    ws.transforms.register("enrich", enrich, inputs=["raw", "cities"], output="enriched")
    ws.transforms.register("kind", arrow_kind, inputs=["raw"], output="kind")
    ws.transforms.register("double", lazy_double, inputs=["raw"], output="double")
    ws.transforms.register("roots", imports_inside, inputs=["raw"], output="roots")
    for name in ("enrich", "kind", "double", "roots"):
        ws.transforms.run(name)
    assert ws.datasets.load_polars("enriched")["state"].to_list() == ["NY", "CA", "NY", "CA"]
    assert ws.datasets.load_polars("kind").to_dicts() == [{"got": "Table", "rows": 4}]
    assert ws.datasets.load_polars("double")["x2"].to_list() == [2, 4, 6, 8]
    assert ws.datasets.load_polars("roots")["pi"].to_list() == [pytest.approx(3.14159)] * 4


@embedded
def test_list_get_versions_and_runs(raw: Workspace) -> None:
    ws = raw
    ws.transforms.register(big)
    ws.transforms.register(
        "agg", "SELECT city, sum(x) AS x FROM raw GROUP BY city", inputs=["raw"], output="agg"
    )
    assert [t.ref for t in ws.transforms.list()] == ["agg@1", "big@1"]
    assert ws.transforms.get("big@1") == ws.transforms.get("big@latest") == ws.transforms.get("big")
    assert ws.transforms.get_by_id(ws.transforms.get("agg").id).name == "agg"
    assert ws.transforms.runs("agg") == []
    with pytest.raises(NotFound, match=r"no version 9 \(latest is 1\)"):
        ws.transforms.get("big@9")
    with pytest.raises(NotFound, match="transform 'nope' does not exist"):
        ws.transforms.get("nope")
    with pytest.raises(NotFound):
        ws.transforms.versions("nope")


# -- refusals: nothing written ------------------------------------------------------------


RUN_FAILURES = [
    (boom, InvalidInput, r"transform fail@1 failed \(line 2 of its code\): ValueError: bad row 7"),
    (not_a_frame, InvalidInput, r"returned list, not a frame"),
    (nothing_left, InvalidInput, r"produced no rows"),
    ("SELECT no_such_column FROM raw", InvalidInput, r"SQL of transform fail@1 failed"),
    ("SELECT * FROM read_csv('/etc/passwd')", InvalidInput, r"SQL of transform fail@1 failed"),
    ("SELECT * FROM raw WHERE x > 100", InvalidInput, r"produced no rows"),
]


@pytest.mark.parametrize(
    ("code", "error", "message"),
    RUN_FAILURES,
    ids=["raises", "not-a-frame", "no-rows", "sql-error", "sql-reads-a-file", "sql-no-rows"],
)
def test_a_failing_run_raises_and_writes_nothing(
    raw: Workspace, code: Any, error: type[Exception], message: str
) -> None:
    ws = raw
    ws.transforms.register("fail", code, inputs=["raw"], output="failed")
    before = state(ws)
    with pytest.raises(error, match=message):
        ws.transforms.run("fail")
    assert state(ws) == before
    with pytest.raises(NotFound):
        ws.datasets.get("failed")


@embedded
def test_unknown_inputs_and_pins_raise_and_write_nothing(raw: Workspace) -> None:
    ws = raw
    ws.transforms.register("join", enrich, inputs=["raw", "cities"], output="joined")
    before = state(ws)
    with pytest.raises(NotFound, match="input of transform join@1: dataset 'cities' does not"):
        ws.transforms.run("join")
    ws.datasets.ingest(cities_frame(), name="cities")
    before = state(ws)
    with pytest.raises(NotFound, match="dataset 'raw' has no version 5"):
        ws.transforms.run("join", inputs={"raw": 5})
    with pytest.raises(InvalidInput, match="has no input 'other'"):
        ws.transforms.run("join", inputs={"other": 1})
    with pytest.raises(InvalidInput, match="a version of another dataset"):
        ws.transforms.run("join", inputs={"raw": "cities@1"})
    with pytest.raises(NotFound, match="transform 'nope' does not exist"):
        ws.transforms.run("nope")
    assert state(ws) == before


def closure_maker() -> Callable[..., Any]:
    factor = 3

    def scaled(raw: pl.DataFrame) -> pl.DataFrame:
        return raw.with_columns(pl.col("x") * factor)

    return scaled


REGISTER_FAILURES = [
    ((uses_a_global,), {"inputs": ["raw"], "output": "o"}, r"uses LIMIT, defined outside"),
    ((two_frames,), {"inputs": ["raw"], "output": "o"}, r"takes 2 arguments but .* 1 input"),
    ((lambda raw: raw,), {"inputs": ["raw"], "output": "o"}, r"cannot be a lambda"),
    ((closure_maker(),), {"inputs": ["raw"], "output": "o"}, r"closure over factor"),
    ((big,), {"inputs": ["big"], "output": "big"}, r"cannot write to its own input"),
    (("t", big), {"inputs": [], "output": "o"}, r"at least one input"),
    (("t", big), {"inputs": ["raw", "raw"], "output": "o"}, r"names input 'raw' twice"),
    (("t", boom), {"inputs": ["raw"], "output": None}, r"needs an output"),
    (("bad name!", big), {"inputs": ["raw"], "output": "o"}, r"transform name 'bad name!'"),
    (("t", "SELEC 1"), {"inputs": ["raw"], "output": "o"}, r"SQL of transform 't' does not parse"),
    (("t", "SELECT 1; SELECT 2"), {"inputs": ["raw"], "output": "o"}, r"exactly one SELECT"),
    (("t", "DROP TABLE raw"), {"inputs": ["raw"], "output": "o"}, r"exactly one SELECT"),
    (("t", "  "), {"inputs": ["raw"], "output": "o"}, r"SQL of transform 't' is empty"),
    (("t", 42), {"inputs": ["raw"], "output": "o"}, r"a Python function or a SQL string"),
]


@embedded
@pytest.mark.parametrize(("args", "kwargs", "message"), REGISTER_FAILURES)
def test_bad_registrations_are_refused_with_nothing_stored(
    raw: Workspace, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    ws = raw
    before = state(ws)
    with pytest.raises(InvalidInput, match=message):
        ws.transforms.register(*args, **kwargs)
    assert state(ws) == before
