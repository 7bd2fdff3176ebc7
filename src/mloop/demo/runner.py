"""``mloop demo``: the whole loop on generated data, with nothing faked.

generate → ingest → infer a suite → validate a dirty batch and quarantine its bad rows → train
and track → register (champion) → serve over real HTTP in a separate process → send traffic
whose second half drifts → stop the server → measure drift in both halves → close the loop:
an alert rule on drift and a retraining policy, the server again (with its loop controller),
late labels over ``POST /v1/feedback`` → the alert fires, the controller retrains on fresh data,
gates, runs a canary beside the champion under guardrails and promotes it → summarise.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mloop.core.clock import now
from mloop.core.errors import MloopError
from mloop.demo.data import DRIFTED_FEATURES, TARGET, corrupt, transactions
from mloop.features import Entity, FeatureView
from mloop.loop import ENDED, LoopRun
from mloop.monitoring import DriftReport
from mloop.workspace import Workspace

DATASET = "transactions"
MODEL = "fraud-detector"
DEPLOYMENT = "fraud"
ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"
MERCHANT_FEATURES = ["merchant_stats:fraud_rate", "merchant_stats:mean_amount"]
EVAL_DATASET = "transactions_eval"
ALERT = "fraud-drift"
LOOP_TIMEOUT = 180.0  # seconds the demo waits for each step of the loop controller


class LoopOutcome(BaseModel):
    """How the demo's pass of the closed loop went."""

    model_config = ConfigDict(frozen=True)

    alert: str
    policy: dict[str, Any]
    labels_sent: int
    run_id: str
    trigger: str
    reason: str
    state: str
    outcome: str
    challenger: int | None
    champion_before: int | None
    champion_after: int | None
    canary_requests: int  # requests sent while the canary ran
    canary_progress: dict[str, Any]
    server_url: str


class DemoSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    workspace: str
    database: str
    dataset: str
    suite: str
    batch: str
    quarantined: str | None
    quarantined_rows: int
    clean: str | None
    run_id: str
    metrics: dict[str, float]
    model: str
    alias: str
    server_url: str
    requests: int
    predictions: int
    failed_requests: int
    logged_predictions: int
    drift_started_at: datetime
    traffic_ended_at: datetime
    drifted_features_first_half: list[str]
    drifted_features_second_half: list[str]
    expected_drifted_features: list[str]
    drifted_outputs_second_half: list[str]
    feature_view: str = ""
    merchants_online: int = 0
    loop: LoopOutcome | None = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path, port: int, log_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MLOOP_HOME": str(home)}
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mloop",
                "--workspace",
                str(home),
                "serve",
                "--port",
                str(port),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MloopError(
                f"the server exited with code {process.returncode} before it was ready"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise MloopError(f"the server at {url} was not ready within {timeout:.0f}s")


def stop_server(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM, so uvicorn shuts down and the prediction log flushes; SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def run_demo(
    home: Path,
    *,
    rows: int = 20_000,
    traffic_rows: int = 6_000,
    rows_per_request: int = 20,
    seed: int = 7,
    console: Console | None = None,
) -> DemoSummary:
    console = console or Console()
    ws = Workspace.open(home)
    try:
        return _run(ws, rows, traffic_rows, rows_per_request, seed, console)
    finally:
        ws.close()


def _run(
    ws: Workspace,
    rows: int,
    traffic_rows: int,
    rows_per_request: int,
    seed: int,
    console: Console,
) -> DemoSummary:
    demo_dir = ws.home / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]mloop demo[/bold] in workspace [cyan]{ws.home}[/cyan]\n")

    with _progress(console) as progress:
        step = progress.add_task("1/12 generate transactions", total=3)
        first = transactions(rows, seed)
        first_path = demo_dir / "transactions-day1.csv"
        first.write_csv(first_path)
        progress.advance(step)
        second, _broken = corrupt(transactions(rows // 5, seed + 1), seed + 2)
        second_path = demo_dir / "transactions-day2.parquet"
        second.write_parquet(second_path)
        progress.advance(step)
        # traffic with its true labels: the labels are held back and arrive late, as feedback
        normal = transactions(traffic_rows // 2, seed + 3).drop("transaction_id")
        shifted = transactions(traffic_rows - traffic_rows // 2, seed + 4, drifted=True).drop(
            "transaction_id"
        )
        progress.advance(step)

        step = progress.add_task("2/12 ingest day 1 (CSV)", total=1)
        v1 = ws.datasets.ingest(first_path, name=DATASET)
        progress.advance(step)

        step = progress.add_task("3/12 infer an expectation suite", total=1)
        suite = ws.validation.infer_suite(v1.ref, name=DATASET)
        progress.advance(step)

        step = progress.add_task("4/12 ingest + validate day 2 (Parquet)", total=2)
        v2 = ws.datasets.ingest(second_path, name=DATASET)
        progress.advance(step)
        split = ws.validation.quarantine(v2, suite)
        progress.advance(step)

        step = progress.add_task("5/12 train, track, register", total=1)
        trained = ws.training.train(
            v1.ref,
            TARGET,
            model=ESTIMATOR,
            exclude=["transaction_id"],
            experiment="demo",
            run_name="demo-fraud-hgb",
            register=MODEL,
            alias="champion",
        )
        assert trained.model_version is not None
        progress.advance(step)

        step = progress.add_task("6/12 feature store: merchant stats, online", total=3)
        merchants = _merchant_features(ws, v1.ref)
        progress.advance(step)
        [materialized] = ws.features.materialize(["merchant_stats"])
        progress.advance(step)
        online = ws.features.online(
            [{"merchant_category": m} for m in merchants], MERCHANT_FEATURES
        )
        progress.advance(step)

        step = progress.add_task("7/12 deploy and start the server", total=1)
        # the deployment follows the champion alias: promoting another version re-points it
        ws.deployments.create(
            DEPLOYMENT,
            {"variants": [{"name": "primary", "model": f"{MODEL}@champion"}]},
            replace=True,
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(ws.home, port, demo_dir / "server.log", "--no-loop")
        try:
            wait_ready(url, server)
            progress.advance(step)
            total_requests = -(-normal.height // rows_per_request) - (
                -shifted.height // rows_per_request
            )
            step = progress.add_task("8/12 send traffic (2nd half drifts)", total=total_requests)
            started_at = now()
            drift_started_at = started_at
            traffic = _Traffic()
            with httpx.Client(base_url=url, timeout=30.0) as client:
                for frame, is_drifted in ((normal, False), (shifted, True)):
                    if is_drifted:
                        time.sleep(0.01)
                        drift_started_at = now()
                    traffic.send(client, frame, rows_per_request, lambda: progress.advance(step))
        finally:
            stop_server(server)
        traffic_ended_at = now()
        sent, failed, predicted = traffic.sent, traffic.failed, traffic.predicted

        step = progress.add_task("9/12 measure drift", total=2)
        first_half = ws.monitoring.drift(MODEL, since=started_at, until=drift_started_at)
        progress.advance(step)
        second_half = ws.monitoring.drift(MODEL, since=drift_started_at, until=traffic_ended_at)
        progress.advance(step)

        loop = _close_the_loop(ws, progress, traffic, rows, rows_per_request, seed, demo_dir)

    logged = first_half.current_rows + second_half.current_rows
    summary = DemoSummary(
        workspace=str(ws.home),
        database=ws.db.display_url,
        dataset=v1.ref,
        suite=f"{suite.name}@{suite.version}",
        batch=v2.ref,
        quarantined=split.quarantined.ref if split.quarantined else None,
        quarantined_rows=split.quarantined_rows,
        clean=split.clean.ref if split.clean else None,
        run_id=trained.run.id,
        metrics={
            k: v
            for k, v in trained.metrics.items()
            if k in ("roc_auc", "accuracy", "f1", "precision", "recall")
        },
        model=trained.model_version.ref,
        alias=trained.alias or "",
        server_url=url,
        requests=sent,
        predictions=predicted,
        failed_requests=failed,
        logged_predictions=logged,
        drift_started_at=drift_started_at,
        traffic_ended_at=traffic_ended_at,
        drifted_features_first_half=sorted(first_half.drifted_features),
        drifted_features_second_half=sorted(second_half.drifted_features),
        expected_drifted_features=sorted(DRIFTED_FEATURES),
        drifted_outputs_second_half=second_half.drifted_outputs,
        feature_view=materialized.view,
        merchants_online=sum(1 for status in online.statuses if status["fraud_rate"] == "present"),
        loop=loop,
    )
    _print_summary(console, summary, second_half)
    return summary


class _Traffic:
    """Requests sent to the deployment, and the true labels held back for each row (they
    arrive later, over ``POST /v1/feedback``)."""

    def __init__(self) -> None:
        self.sent = self.failed = self.predicted = 0
        self.labels: list[dict[str, Any]] = []  # feedback not sent yet

    def send(
        self,
        client: httpx.Client,
        frame: pl.DataFrame,
        rows_per_request: int,
        advance: Callable[[], None],
        *,
        key: str | None = None,
    ) -> None:
        truth = frame.get_column(TARGET).to_list()
        rows = frame.drop(TARGET).to_dicts()
        for offset in range(0, len(rows), rows_per_request):
            batch = rows[offset : offset + rows_per_request]
            body: dict[str, Any] = {"rows": batch}
            if key is not None:  # a client id: sticky, so clients spread over the variants
                body["key"] = f"{key}-{offset}"
            response = client.post(f"/v1/deployments/{DEPLOYMENT}/predict", json=body)
            self.sent += 1
            if response.status_code == 200:
                answer = response.json()
                self.predicted += len(answer["predictions"])
                self.labels.extend(
                    {"request_id": answer["request_id"], "row_index": i, "label": truth[offset + i]}
                    for i in range(len(batch))
                )
            else:
                self.failed += 1
            advance()

    def send_labels(self, client: httpx.Client) -> int:
        sent = 0
        for i in range(0, len(self.labels), 2000):
            chunk = self.labels[i : i + 2000]
            response = client.post("/v1/feedback", json={"labels": chunk})
            if response.status_code != 200:
                raise MloopError(f"the server refused the labels: {response.text[:300]}")
            sent += len(chunk)
        self.labels = []
        return sent


def _close_the_loop(
    ws: Workspace,
    progress: Progress,
    traffic: _Traffic,
    rows: int,
    rows_per_request: int,
    seed: int,
    demo_dir: Path,
) -> LoopOutcome:
    """An alert on drift, a retraining policy with a canary, fresh labeled data; then the
    server again, with its loop controller, and the labels of the traffic it served."""
    step = progress.add_task("10/12 alert, loop policy, fresh data", total=3)
    # day 3: labeled transactions that look like the drifted traffic — what `retrain` trains
    # on (the newest version of the dataset) and what the gates evaluate on
    fresh, evaluation = demo_dir / "transactions-day3.csv", demo_dir / "transactions-eval.csv"
    transactions(rows // 2, seed + 5, drifted=True).write_csv(fresh)
    transactions(rows // 4, seed + 6, drifted=True).write_csv(evaluation)
    ws.datasets.ingest(fresh, name=DATASET)  # as day 1 came: a CSV file
    ws.datasets.ingest(evaluation, name=EVAL_DATASET)
    progress.advance(step)
    ws.registry.set_policy(
        MODEL,
        gates=["roc_auc >= champion.roc_auc - 0.02"],
        dataset=EVAL_DATASET,
        reason="demo: a retrained model must rank fraud as well as the champion",
    )
    if any(rule.name == ALERT for rule in ws.alerts.list()):
        ws.alerts.delete(ALERT)
    ws.alerts.add(
        {
            "name": ALERT,
            "model": f"{MODEL}@champion",
            "series": "drift_share",
            "op": ">=",
            "threshold": 0.3,
            "window": "1h",
            "description": "a third of the inputs drifted from the training data",
        }
    )
    policy = ws.loop.set_policy(
        MODEL,
        {
            "triggers": [{"type": "alert", "rule": ALERT}],
            "recipe": {"name": "retrain", "params": {"dataset": DATASET, "model": ESTIMATOR}},
            "deployment": DEPLOYMENT,
            "canary": {
                "percent": 30,
                "requests": 40,
                "max_duration": "5m",
                "guardrails": {"max_error_rate": 0.01, "max_metric_drop": 0.05, "min_labels": 200},
            },
            "cooldown": "10s",
        },
    )
    progress.advance(step)
    before = {r.id for r in ws.loop.runs(MODEL, limit=1000)}
    champion_before = ws.registry.get_model(MODEL).aliases.get("champion")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(
        ws.home, port, demo_dir / "server-loop.log", "--loop", "--loop-interval", "1s"
    )
    canary_sent = labels_sent = 0
    try:
        wait_ready(url, server)
        progress.advance(step)
        step = progress.add_task("11/12 labels; alert; retrain; canary", total=3)
        with httpx.Client(base_url=url, timeout=30.0) as client:
            labels_sent = traffic.send_labels(client)
            progress.advance(step)
            run = _wait_for_pass(ws, before, ("canary", *ENDED), LOOP_TIMEOUT)
            progress.advance(step)
            # traffic keeps flowing while the canary runs; its labels follow each burst
            canary = _Traffic()
            burst = 0
            deadline = time.monotonic() + LOOP_TIMEOUT
            while run.state == "canary" and time.monotonic() < deadline:
                frame = transactions(20 * rows_per_request, seed + 100 + burst, drifted=True)
                canary.send(
                    client,
                    frame.drop("transaction_id"),
                    rows_per_request,
                    lambda: None,
                    key=f"client{burst}",
                )
                labels_sent += canary.send_labels(client)
                burst += 1
                time.sleep(0.5)
                run = ws.loop.get_run(run.id)
            run = _wait_for_pass(ws, before, ENDED, LOOP_TIMEOUT)
            canary_sent = canary.sent
            progress.advance(step)
    finally:
        stop_server(server)
    return LoopOutcome(
        alert=ALERT,
        policy=policy.model_dump(mode="json"),
        labels_sent=labels_sent,
        run_id=run.id,
        trigger=run.trigger,
        reason=run.reason,
        state=run.state,
        outcome=run.outcome,
        challenger=run.candidate_version,
        champion_before=champion_before,
        champion_after=ws.registry.get_model(MODEL).aliases.get("champion"),
        canary_requests=canary_sent,
        canary_progress=run.detail.get("progress") or {},
        server_url=url,
    )


def _wait_for_pass(
    ws: Workspace, known: set[str], states: tuple[str, ...], timeout: float
) -> LoopRun:
    """The new pass of the loop, once it reaches one of ``states``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in ws.loop.runs(MODEL, limit=5) if r.id not in known]
        if runs and runs[0].state in states:
            return runs[0]
        time.sleep(0.25)
    raise MloopError(
        f"the loop controller did not reach {' or '.join(states)} within {timeout:.0f}s "
        "(see demo/server-loop.log)"
    )


def _print_loop(table: Table, loop: LoopOutcome) -> None:
    table.add_row("labels (late)", f"{loop.labels_sent:,} sent to POST /v1/feedback")
    table.add_row("loop trigger", loop.reason)
    progress = loop.canary_progress
    mine, theirs = progress.get("challenger") or {}, progress.get("stable") or {}
    metric = progress.get("metric")
    canary = (
        f"{mine.get('requests', 0)} requests to version {loop.challenger}, "
        f"{mine.get('errors', 0)} failed; the champion {theirs.get('requests', 0)}"
    )
    if metric:
        canary += (
            f"; live {metric['name']} {metric['challenger']:.3f} vs the champion's "
            f"{metric['champion']:.3f}"
        )
    table.add_row("canary", canary)
    table.add_row(
        "loop outcome",
        f"{loop.state}: {loop.outcome} (champion: version {loop.champion_before} → "
        f"{loop.champion_after})",
    )


def _merchant_features(ws: Workspace, dataset: str) -> list[str]:
    """Per merchant category, its fraud rate and mean amount in the training data, as a
    feature view over a dataset of those stats; returns the categories."""
    frame = ws.datasets.load_polars(dataset)
    stats = (
        frame.group_by("merchant_category")
        .agg(
            pl.col(TARGET).mean().alias("fraud_rate"),
            pl.col("amount").mean().alias("mean_amount"),
            pl.len().alias("transactions"),
        )
        .drop_nulls("merchant_category")
        .with_columns(pl.lit(now().replace(tzinfo=None, microsecond=0)).alias("as_of"))
        .sort("merchant_category")
    )
    ws.datasets.write_version("merchant_stats", stats.to_arrow())
    merchant = Entity("merchant", join_keys={"merchant_category": "string"})
    view = FeatureView(
        "merchant_stats",
        entities=[merchant],
        source="merchant_stats",
        timestamp_column="as_of",
        features=["fraud_rate", "mean_amount", "transactions"],
        ttl="1d",
        description="fraud rate and mean amount per merchant category (demo)",
    )
    ws.features.apply([merchant, view])
    return [str(m) for m in stats.get_column("merchant_category").to_list()]


def _drift_table(report: DriftReport) -> Table:
    """The second half's drift, column by column, with what the demo shifted on purpose (the
    demo sits below the CLI, so it renders its own table rather than ``mloop monitor``'s)."""
    table = Table(
        "column",
        "method",
        "statistic",
        "threshold",
        "PSI",
        "drifted",
        "shifted",
        title=f"drift of {report.model}@{report.version} vs {report.reference}, 2nd half",
        title_justify="left",
    )
    for col in [*report.features, *report.outputs]:
        rule = "p <" if col.method in ("ks", "chi_square") else "≥"
        table.add_row(
            col.column,
            col.method,
            "-" if col.statistic is None else f"{col.statistic:.4f}",
            f"{rule} {col.threshold}",
            "-" if col.psi is None else f"{col.psi:.3f}",
            "[red]DRIFT[/red]" if col.drifted else "[green]ok[/green]",
            "yes" if col.column in DRIFTED_FEATURES else "",
        )
    return table


def _print_summary(console: Console, s: DemoSummary, report: DriftReport) -> None:
    console.print()
    console.print(_drift_table(report))
    table = Table(title="mloop demo: the loop, end to end", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("dataset version", f"{s.dataset} (training data)")
    table.add_row("expectation suite", s.suite)
    table.add_row(
        "validated batch",
        f"{s.batch}: {s.quarantined_rows} bad rows → {s.quarantined or '-'}; "
        f"clean rows → {s.clean or '-'}",
    )
    table.add_row("run", s.run_id)
    table.add_row("hold-out metrics", "  ".join(f"{k}={v:.3f}" for k, v in s.metrics.items()))
    table.add_row("model version", f"{s.model} (alias {s.alias})")
    table.add_row(
        "feature store",
        f"{s.feature_view}: {s.merchants_online} merchants materialized and read online",
    )
    model_name = s.model.split("@")[0]
    table.add_row(
        "served",
        f"{s.requests} requests, {s.predictions:,} predictions, {s.failed_requests} failed "
        f"(deployment {DEPLOYMENT} on {model_name}@champion, server was {s.server_url})",
    )
    table.add_row("logged predictions", f"{s.logged_predictions:,}")
    table.add_row("drift, 1st half", ", ".join(s.drifted_features_first_half) or "none")
    table.add_row(
        "drift, 2nd half",
        f"{', '.join(s.drifted_features_second_half) or 'none'} "
        f"(shifted on purpose: {', '.join(s.expected_drifted_features)})",
    )
    if s.loop is not None:
        _print_loop(table, s.loop)
    console.print(table)
    ws_flag = f" --workspace {s.workspace}" if Path(s.workspace) != Path(".mloop").resolve() else ""
    model = s.model.split("@")[0]
    since = s.drift_started_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    until = s.traffic_ended_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    console.print(
        "\n[bold]Where to look next[/bold]\n"
        f"  mloop{ws_flag} data versions {DATASET}\n"
        f"  mloop{ws_flag} data show {s.dataset}\n"
        f"  mloop{ws_flag} runs show {s.run_id}\n"
        f"  mloop{ws_flag} models show {model}\n"
        f"  mloop{ws_flag} features status\n"
        f"  mloop{ws_flag} deployments show {DEPLOYMENT}\n"
        f"  mloop{ws_flag} monitor drift --model {s.model} --since {since} --until {until}\n"
        f"  mloop{ws_flag} monitor windows --model {model}@1 -w 1h\n"
        f"  mloop{ws_flag} monitor performance --model {model}\n"
        f"  mloop{ws_flag} alerts history\n"
        f"  mloop{ws_flag} loop status\n"
        f"  mloop{ws_flag} loop history {model}\n"
        f"  mloop{ws_flag} serve   # then POST http://127.0.0.1:8000/v1/deployments/"
        f"{DEPLOYMENT}/predict, or open /docs\n"
        f"  the workspace itself: {s.workspace} (metadata in {s.database}, "
        "artifacts under artifacts/sha256)"
    )
