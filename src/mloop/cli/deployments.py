"""mloop deploy, mloop deployments list/show/update/delete."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mloop.cli._common import (
    console,
    fmt_time,
    new_app,
    open_workspace,
    print_json,
    read_yaml,
)

if TYPE_CHECKING:
    from mloop.serving import Deployment, DeploymentSpec

app = new_app("Deployments: what `mloop serve` serves, and how traffic splits across versions.")
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]

Model = Annotated[
    str | None,
    typer.Option("--model", "-m", help="The model to serve: NAME@ALIAS (followed) or NAME@N."),
]
Canary = Annotated[
    str | None, typer.Option(help="A canary model (NAME@ALIAS or NAME@N) beside --model.")
]
CanaryPercent = Annotated[float, typer.Option(help="The canary's share of traffic, in percent.")]
Variants = Annotated[
    list[str] | None,
    typer.Option(
        "--variant",
        help="A/B: NAME=MODEL_REF[:WEIGHT] (repeat; weights are relative, default equal).",
    ),
]
Shadows = Annotated[
    list[str] | None,
    typer.Option("--shadow", help="Mirror traffic to MODEL_REF (or NAME=MODEL_REF); repeat."),
]
StickyKey = Annotated[
    str | None,
    typer.Option(help="Row column whose value keeps a client on one variant (sticky)."),
]
MaxBatch = Annotated[
    int | None, typer.Option(help="Most rows per model call of the micro-batcher (default 64).")
]
MaxWait = Annotated[
    float | None,
    typer.Option(help="Most milliseconds a request waits for others to batch with (default 0)."),
]
Timeout = Annotated[
    int | None, typer.Option(help="Milliseconds a request may wait for the model before 503.")
]
RuntimeOpt = Annotated[
    str,
    typer.Option(
        help="auto: ONNX Runtime when the version has a verified ONNX export; native; onnx."
    ),
]
SpecFile = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="A YAML (or JSON) deployment spec instead of options."),
]


def _spec(
    file: Path | None,
    model: str | None,
    variant: list[str] | None,
    canary: str | None,
    canary_percent: float,
    shadow: list[str] | None,
    sticky_key: str | None,
    max_batch_size: int | None,
    max_wait_ms: float | None,
    timeout_ms: int | None,
    runtime: str,
) -> DeploymentSpec:
    from mloop.core.errors import InvalidInput
    from mloop.serving import check_spec, spec_from_options

    if file is not None:
        if model or variant or canary or shadow:
            raise InvalidInput("give either --file or the model options, not both")
        body: Any = read_yaml(file)
        if isinstance(body, dict):
            body.pop("name", None)
        return check_spec(body)
    if runtime not in ("auto", "native", "onnx"):
        raise InvalidInput(f"--runtime is auto, native or onnx, not {runtime!r}")
    return spec_from_options(
        model,
        variants=variant or [],
        canary=canary,
        canary_percent=canary_percent,
        shadows=shadow or [],
        sticky_key=sticky_key,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        timeout_ms=timeout_ms,
        runtime=runtime,
    )


def _print(deployment: Deployment) -> None:
    shares = {v.name: share for v, share in deployment.shares()}
    console.print(
        f"[bold]{deployment.name}[/bold]  strategy {deployment.strategy}, revision "
        f"{deployment.revision}, updated {fmt_time(deployment.updated_at)}"
        + (f", sticky by {deployment.sticky_key}" if deployment.sticky_key else "")
    )
    table = Table("variant", "model", "traffic", "runtime")
    for v in deployment.variants:
        traffic = "shadow (mirrored)" if v.shadow else f"{100 * shares[v.name]:.4g}%"
        table.add_row(v.name, v.model, traffic, v.runtime)
    console.print(table)
    b = deployment.batching
    console.print(
        f"batching: up to {b.max_batch_size} rows, waiting up to {b.max_wait_ms:g} ms; "
        f"timeout {deployment.timeout_ms} ms"
    )


def deploy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The deployment's name (its URL).")],
    model: Model = None,
    file: SpecFile = None,
    variant: Variants = None,
    canary: Canary = None,
    canary_percent: CanaryPercent = 10.0,
    shadow: Shadows = None,
    sticky_key: StickyKey = None,
    max_batch_size: MaxBatch = None,
    max_wait_ms: MaxWait = None,
    timeout_ms: Timeout = None,
    runtime: RuntimeOpt = "auto",
    replace: Annotated[bool, typer.Option(help="Update NAME if it exists.")] = False,
    as_json: JSON = False,
) -> None:
    """Create deployment NAME: one model (--model), a canary beside it (--canary), an A/B
    split (--variant ...), shadows (--shadow), or a YAML spec (--file). `mloop serve`
    serves it at /v1/deployments/NAME/predict (and V2, and MLflow's /invocations)."""
    ws = open_workspace(ctx)
    spec = _spec(
        file,
        model,
        variant,
        canary,
        canary_percent,
        shadow,
        sticky_key,
        max_batch_size,
        max_wait_ms,
        timeout_ms,
        runtime,
    )
    created = ws.deployments.create(name, spec, replace=replace)
    if as_json:
        print_json(created)
        return
    _print(created)
    console.print(f"serve it: mloop serve, then POST /v1/deployments/{name}/predict")


@app.command("list")
def list_(ctx: typer.Context, as_json: JSON = False) -> None:
    """Every deployment, its strategy and variants."""
    ws = open_workspace(ctx)
    found = ws.deployments.list()
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no deployments yet: mloop deploy NAME --model MODEL@champion")
        return
    table = Table("deployment", "strategy", "variants", "revision", "updated")
    for d in found:
        shares = {v.name: share for v, share in d.shares()}
        variants = ", ".join(
            f"{v.name}={v.model}" + (" (shadow)" if v.shadow else f" {100 * shares[v.name]:.3g}%")
            for v in d.variants
        )
        table.add_row(d.name, d.strategy, variants, str(d.revision), fmt_time(d.updated_at))
    console.print(table)


@app.command()
def show(ctx: typer.Context, name: str, as_json: JSON = False) -> None:
    """A deployment: its variants (and the versions their references name now), traffic,
    batching."""
    ws = open_workspace(ctx)
    found = ws.deployments.get(name)
    if as_json:
        resolved = {v.name: mv.version for v, mv in ws.deployments.resolve(found)}
        print_json({**found.model_dump(mode="json"), "resolved": resolved})
        return
    _print(found)
    for v, mv in ws.deployments.resolve(found):
        console.print(f"  {v.name}: {v.model} → {mv.ref}")


@app.command()
def update(
    ctx: typer.Context,
    name: str,
    model: Model = None,
    file: SpecFile = None,
    variant: Variants = None,
    canary: Canary = None,
    canary_percent: CanaryPercent = 10.0,
    shadow: Shadows = None,
    sticky_key: StickyKey = None,
    max_batch_size: MaxBatch = None,
    max_wait_ms: MaxWait = None,
    timeout_ms: Timeout = None,
    runtime: RuntimeOpt = "auto",
    as_json: JSON = False,
) -> None:
    """Replace deployment NAME's spec (the same options as deploy). Running servers swap to
    it within a second without failing a request."""
    ws = open_workspace(ctx)
    spec = _spec(
        file,
        model,
        variant,
        canary,
        canary_percent,
        shadow,
        sticky_key,
        max_batch_size,
        max_wait_ms,
        timeout_ms,
        runtime,
    )
    changed = ws.deployments.update(name, spec)
    if as_json:
        print_json(changed)
        return
    _print(changed)


@app.command()
def delete(ctx: typer.Context, name: str) -> None:
    """Delete deployment NAME (servers stop serving it within a second)."""
    ws = open_workspace(ctx)
    ws.deployments.delete(name)
    console.print(f"deleted deployment {name}")
