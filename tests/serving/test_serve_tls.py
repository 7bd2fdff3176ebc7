"""mloop serve over TLS: a real server process with a self-signed certificate."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mloop.demo.data import transactions
from mloop.demo.runner import free_port
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_serve_answers_https_with_the_given_certificate(
    sqlite_ws: Workspace, rows: list[dict[str, object]], tmp_path: Path
) -> None:
    served = sqlite_ws
    served.datasets.ingest(transactions(400, seed=21), name="tx")
    served.training.train(
        "tx", "is_fraud", model=LOGREG, exclude=["transaction_id"], register="fraud", plots=False
    )
    served.deployments.create("fraud", {"variants": [{"name": "p", "model": "fraud@1"}]})
    cert, key = _self_signed(tmp_path)
    port = free_port()
    env = {**os.environ, "MLOOP_HOME": str(served.home)}
    if served.settings.database_url:
        env["MLOOP_DATABASE_URL"] = served.settings.database_url
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mloop",
            "serve",
            "--port",
            str(port),
            "--ssl-certfile",
            str(cert),
            "--ssl-keyfile",
            str(key),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/v2/health/ready", verify=trust).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the TLS server never became ready"
            time.sleep(0.2)
        answer = httpx.post(
            f"{url}/v1/deployments/fraud/predict", json={"rows": rows[:3]}, verify=trust
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == served.predict("fraud@1", rows[:3]).predictions
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port is not served
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).raise_for_status()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        log.close()
