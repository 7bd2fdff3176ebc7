"""mloop lineage: show the graph around a node as a tree; export it as OpenLineage events."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.tree import Tree

from mloop.cli._common import console, dump, new_app, open_workspace, print_json
from mloop.core.errors import InvalidInput

if TYPE_CHECKING:
    from mloop.lineage import LineageGraph, LineageNode

app = new_app(
    "Lineage: what a dataset version, run or model was made from, and what was made from it."
)
NODE_HELP = (
    "dataset:NAME@V (or NAME@V), run:RUN_ID, model:NAME@V or model:NAME@ALIAS, source:URI, "
    "transform:NAME@V, loop_run:ID"
)
TYPE_WORDS = {"dataset_version": "dataset", "model_version": "model"}


def _details(node: LineageNode) -> str:
    d = node.details
    if node.missing:
        return ""
    if node.type == "dataset_version":
        return f"{d.get('kind')}, {d.get('rows', 0):,} rows"
    if node.type == "run":
        return f"{d.get('experiment')}, {str(d.get('status', '')).lower()}, {node.id}"
    if node.type == "model_version":
        aliases = d.get("aliases") or []
        return " ".join(f"@{a}" for a in aliases)
    if node.type == "transform":
        return str(d.get("kind", ""))
    return ""


def _label(node: LineageNode, relation: str | None = None) -> str:
    word = TYPE_WORDS.get(node.type, node.type)
    details = _details(node)
    text = f"[cyan]{escape(word)}[/cyan] [bold]{escape(node.label)}[/bold]"
    if details:
        text += f"  [dim]{escape(details)}[/dim]"
    if relation:
        text = f"[magenta]{escape(relation)}[/magenta] {text}"
    return text


def _grow(tree: Tree, graph: LineageGraph, key: str, upstream: bool, shown: set[str]) -> None:
    """Add ``key``'s parents (upstream) or children (downstream), each node expanded once."""
    linked = graph.parents(key) if upstream else graph.children(key)
    for relation, node in linked:
        if node.key in shown:
            tree.add(_label(node, relation) + " [dim](shown above)[/dim]")
            continue
        shown.add(node.key)
        _grow(tree.add(_label(node, relation)), graph, node.key, upstream, shown)


def render(graph: LineageGraph) -> Tree:
    root = graph.node(graph.root)
    tree = Tree(_label(root))
    sides = []
    if graph.direction in ("upstream", "both"):
        sides.append(True)
    if graph.direction in ("downstream", "both"):
        sides.append(False)
    for upstream in sides:
        branch = tree
        if len(sides) == 2:
            branch = tree.add("[dim]made from[/dim]" if upstream else "[dim]used by[/dim]")
        before = len(branch.children)
        _grow(branch, graph, graph.root, upstream, {graph.root})
        if len(branch.children) == before:
            branch.add("[dim](nothing)[/dim]")
    return tree


@app.command()
def show(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help=NODE_HELP)],
    upstream: Annotated[
        bool, typer.Option("--upstream", help="Only what NODE was made from.")
    ] = False,
    downstream: Annotated[
        bool, typer.Option("--downstream", help="Only what was made from NODE.")
    ] = False,
    depth: Annotated[int, typer.Option(help="How many hops to follow (0-100).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print nodes and edges as JSON.")] = False,
) -> None:
    """Show the lineage of NODE as a tree (both directions unless one is asked for)."""
    ws = open_workspace(ctx)
    direction: Any = "both"
    if upstream != downstream:
        direction = "upstream" if upstream else "downstream"
    graph = ws.lineage.graph(node, direction, depth)
    if as_json:
        print_json(graph)
        return
    console.print(render(graph))


@app.command()
def export(
    ctx: typer.Context,
    node: Annotated[
        str | None,
        typer.Argument(help=f"Only the steps around this node: {NODE_HELP}. Default: all."),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="openlineage")] = "openlineage",
    namespace: Annotated[
        str | None, typer.Option(help="Namespace of jobs and datasets (default mloop://<home>).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """Export lineage as OpenLineage RunEvents (a JSON array, one COMPLETE event per ingest,
    transform run and training run)."""
    if format.lower() != "openlineage":
        raise InvalidInput(f"unknown export format {format!r}; use --format openlineage")
    ws = open_workspace(ctx)
    events = ws.lineage.openlineage(node, namespace=namespace)
    if output is None:
        print_json(events)
        return
    output.write_text(dump(events) + "\n")
    console.print(f"wrote {len(events)} OpenLineage events to {escape(str(output))}")
