"""mloop deploy (every shape), mloop deployments list/show/update/delete, their --json, bad input
as one error line, and mloop serve refusing half a TLS configuration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mloop.cli import app
from mloop.demo.data import transactions
from mloop.demo.runner import free_port
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fraud@1 (champion) and fraud@2, trained once for the module."""
    home = tmp_path_factory.mktemp("deploy-cli") / "ws"
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("MLOOP_") and key != "MLOOP_TEST_PG_URL":
                mp.delenv(key)
        ws = Workspace.open(home)
        try:
            ws.datasets.ingest(transactions(300, seed=21), name="tx")
            for c in (1.0, 0.01):
                ws.training.train(
                    "tx",
                    "is_fraud",
                    model=LOGREG,
                    params={"C": c},
                    exclude=["transaction_id"],
                    register="fraud",
                    plots=False,
                )
        finally:
            ws.close()
    return home


@pytest.fixture
def fws(template: Path, tmp_path: Path) -> Iterator[Workspace]:
    home = tmp_path / "ws"
    shutil.copytree(template, home)
    ws = Workspace.open(home)
    try:
        yield ws
    finally:
        ws.close()


def mloop(ws: Workspace, *args: str) -> tuple[int, str, str]:
    """``mloop --workspace WS ARGS…``: (exit code, stdout, stderr). A crash is raised."""
    result = CliRunner().invoke(app, ["--workspace", str(ws.home), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def ok_json(ws: Workspace, *args: str) -> Any:
    code, out, err = mloop(ws, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def refused(ws: Workspace, *args: str) -> str:
    """Run a command that must fail: a non-zero exit and one error line, which is returned."""
    code, out, err = mloop(ws, *args)
    assert code != 0, out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def _variants(body: dict[str, Any]) -> list[tuple[str, str, float, bool]]:
    return [(v["name"], v["model"], v["weight"], v["shadow"]) for v in body["variants"]]


# -- deploy, each shape -------------------------------------------------------------------------


def test_deploy_one_model(fws: Workspace) -> None:
    code, out, err = mloop(fws, "deploy", "fraud", "--model", "fraud@champion")
    assert code == 0, err
    assert "fraud" in out
    assert "strategy single, revision 1" in out
    assert "/v1/deployments/fraud/predict" in out
    found = fws.deployments.get("fraud")
    assert [(v.name, v.model) for v in found.variants] == [("primary", "fraud@champion")]


def test_deploy_a_canary(fws: Workspace) -> None:
    body = ok_json(
        fws, "deploy", "fraud", "-m", "fraud@1", "--canary", "fraud@2", "--canary-percent", "20"
    )
    assert body["strategy"] == "canary"
    assert _variants(body) == [
        ("primary", "fraud@1", 100.0, False),
        ("canary", "fraud@2", 20.0, False),
    ]
    code, out, _ = mloop(fws, "deployments", "show", "fraud")
    assert code == 0
    assert "80%" in out
    assert "20%" in out


def test_deploy_an_ab_split_with_options(fws: Workspace) -> None:
    body = ok_json(
        fws,
        "deploy",
        "ab",
        "--variant",
        "a=fraud@1:70",
        "--variant",
        "b=fraud@2:30",
        "--sticky-key",
        "customer_id",
        "--max-batch-size",
        "8",
        "--max-wait-ms",
        "2.5",
        "--timeout-ms",
        "300",
        "--runtime",
        "native",
    )
    assert body["strategy"] == "ab"
    assert _variants(body) == [("a", "fraud@1", 70.0, False), ("b", "fraud@2", 30.0, False)]
    assert body["sticky_key"] == "customer_id"
    assert body["batching"] == {"max_batch_size": 8, "max_wait_ms": 2.5}
    assert body["timeout_ms"] == 300
    assert {v["runtime"] for v in body["variants"]} == {"native"}


def test_deploy_with_shadows(fws: Workspace) -> None:
    body = ok_json(
        fws, "deploy", "fraud", "-m", "fraud@1", "--shadow", "fraud@2", "--shadow", "old=fraud@1"
    )
    assert _variants(body) == [
        ("primary", "fraud@1", 100.0, False),
        ("shadow1", "fraud@2", 100.0, True),
        ("old", "fraud@1", 100.0, True),
    ]
    code, out, _ = mloop(fws, "deployments", "list")
    assert code == 0
    assert "shadow1=fraud@2" in out
    assert "(shadow)" in out


def test_deploy_from_a_yaml_file(fws: Workspace, tmp_path: Path) -> None:
    spec = tmp_path / "fraud.yaml"
    spec.write_text(
        "name: ignored-here\n"
        "strategy: canary\n"
        "sticky_key: customer_id\n"
        "variants:\n"
        "  - {name: stable, model: fraud@champion}\n"
        "  - {name: next, model: fraud@2, weight: 5}\n"
        "  - {name: mirror, model: fraud@2, shadow: true}\n"
        "batching: {max_batch_size: 16}\n"
    )
    body = ok_json(fws, "deploy", "fraud", "--file", str(spec))
    assert body["name"] == "fraud"  # the argument names it, not the file
    assert body["strategy"] == "canary"
    assert _variants(body) == [
        ("stable", "fraud@champion", 100.0, False),
        ("next", "fraud@2", 5.0, False),
        ("mirror", "fraud@2", 100.0, True),
    ]
    assert body["batching"]["max_batch_size"] == 16
    as_json = tmp_path / "spec.json"
    as_json.write_text(json.dumps({"variants": [{"name": "p", "model": "fraud@2"}]}))
    assert ok_json(fws, "deploy", "other", "-f", str(as_json))["variants"][0]["model"] == "fraud@2"


def test_deploy_replace(fws: Workspace) -> None:
    ok_json(fws, "deploy", "fraud", "-m", "fraud@1")
    assert "exists" in refused(fws, "deploy", "fraud", "-m", "fraud@2")
    body = ok_json(fws, "deploy", "fraud", "-m", "fraud@2", "--replace")
    assert (body["revision"], body["variants"][0]["model"]) == (2, "fraud@2")


# -- list, show, update, delete -----------------------------------------------------------------


def test_list_show_update_delete(fws: Workspace) -> None:
    code, out, _ = mloop(fws, "deployments", "list")
    assert code == 0
    assert "no deployments yet" in out
    assert ok_json(fws, "deployments", "list") == []

    ok_json(fws, "deploy", "fraud", "-m", "fraud@champion")
    ok_json(fws, "deploy", "ab", "--variant", "a=fraud@1", "--variant", "b=fraud@2")
    listed = ok_json(fws, "deployments", "list")
    assert [(d["name"], d["strategy"], d["revision"]) for d in listed] == [
        ("ab", "ab", 1),
        ("fraud", "single", 1),
    ]
    code, out, _ = mloop(fws, "deployments", "list")
    assert code == 0
    assert "a=fraud@1 50%" in out
    assert "b=fraud@2 50%" in out

    shown = ok_json(fws, "deployments", "show", "fraud")
    assert shown["name"] == "fraud"
    assert shown["resolved"] == {"primary": 1}
    fws.registry.set_alias("fraud", "champion", 2)
    assert ok_json(fws, "deployments", "show", "fraud")["resolved"] == {"primary": 2}
    code, out, _ = mloop(fws, "deployments", "show", "fraud")
    assert code == 0
    assert "primary: fraud@champion → fraud@2" in out

    updated = ok_json(fws, "deployments", "update", "fraud", "-m", "fraud@1", "--canary", "fraud@2")
    assert (updated["revision"], updated["strategy"]) == (2, "canary")
    code, out, _ = mloop(fws, "deployments", "update", "fraud", "-m", "fraud@1")
    assert code == 0
    assert "strategy single, revision 3" in out
    assert fws.deployments.get("fraud").revision == 3

    code, out, _ = mloop(fws, "deployments", "delete", "fraud")
    assert code == 0
    assert "deleted deployment fraud" in out
    assert [d["name"] for d in ok_json(fws, "deployments", "list")] == ["ab"]
    assert "no deployment named 'fraud'" in refused(fws, "deployments", "show", "fraud")
    assert "no deployment named 'fraud'" in refused(fws, "deployments", "delete", "fraud")
    assert "no deployment named 'fraud'" in refused(
        fws, "deployments", "update", "fraud", "-m", "fraud@1"
    )


# -- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_one_error_line(fws: Workspace, tmp_path: Path) -> None:
    assert "nosuch" in refused(fws, "deploy", "d", "--model", "nosuch@1")
    assert "no alias 'staging'" in refused(fws, "deploy", "d", "--model", "fraud@staging")
    assert "give the model to deploy" in refused(fws, "deploy", "d", "--canary", "fraud@2")
    assert "give the model to deploy" in refused(fws, "deploy", "d")
    assert "not both" in refused(
        fws, "deploy", "d", "-m", "fraud@1", "--variant", "a=fraud@1", "--variant", "b=fraud@2"
    )
    assert "is not a number" in refused(
        fws, "deploy", "d", "--variant", "a=fraud@1:half", "--variant", "b=fraud@2"
    )
    assert "strategy 'ab' needs two or more" in refused(
        fws, "deploy", "d", "--variant", "a=fraud@1"
    )
    assert "between 0 and 100" in refused(
        fws, "deploy", "d", "-m", "fraud@1", "--canary", "fraud@2", "--canary-percent", "100"
    )
    assert "--runtime is auto, native or onnx" in refused(
        fws, "deploy", "d", "-m", "fraud@1", "--runtime", "gpu"
    )
    assert "deployment name" in refused(fws, "deploy", "no way", "-m", "fraud@1")

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("variants: [\n  - {name: a\n")
    code, _, err = mloop(fws, "deploy", "d", "--file", str(bad_yaml))
    assert code == 2
    assert err.startswith("error: ")
    assert "is not valid YAML" in err
    not_a_spec = tmp_path / "list.yaml"
    not_a_spec.write_text("- fraud@1\n")
    assert "a deployment spec is an object" in refused(fws, "deploy", "d", "-f", str(not_a_spec))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("variants:\n  - {name: a, model: fraud@1, weight: 300}\n")
    assert "variants.0.weight" in refused(fws, "deploy", "d", "-f", str(wrong))
    good = tmp_path / "good.yaml"
    good.write_text("variants:\n  - {name: a, model: fraud@1}\n")
    assert "either --file or the model options" in refused(
        fws, "deploy", "d", "--file", str(good), "--model", "fraud@1"
    )
    assert "no such file" in refused(fws, "deploy", "d", "--file", str(tmp_path / "nope.yaml"))
    assert fws.deployments.list() == []  # nothing was created by any of them


def test_bad_yaml_is_one_error_line(fws: Workspace, tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("variants: [\n  - {name: a\n")
    message = refused(fws, "deploy", "d", "--file", str(bad_yaml))
    assert "is not valid YAML at line 2, column 3" in message


def test_serve_refuses_half_a_tls_configuration(fws: Workspace, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not checked before the pairing")
    line = refused(fws, "serve", "--ssl-certfile", str(cert))
    assert "TLS needs both --ssl-certfile and --ssl-keyfile" in line
    line = refused(fws, "serve", "--ssl-keyfile", str(cert))
    assert "TLS needs both" in line
    line = refused(
        fws, "serve", "--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path / "no.pem")
    )
    assert "no such file" in line


def test_serve_refuses_an_unknown_default_deployment(fws: Workspace) -> None:
    # a process of its own: serve limits the thread pools of the process it runs in
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOOP_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mloop",
            "--workspace",
            str(fws.home),
            "serve",
            "--port",
            str(free_port()),
            "--deployment",
            "nosuch",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: no deployment named 'nosuch'"], done.stderr
