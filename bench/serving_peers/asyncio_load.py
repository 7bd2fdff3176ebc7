"""A bounded asyncio HTTP/1.1 load client for bench/serving.py (the fallback to wrk, and the
client of the batch-through-REST measurement).

    python asyncio_load.py URL BODIES_FILE -c 32 -d 10          # for 10 s
    python asyncio_load.py URL BODIES_FILE -c 4 -n 20           # 20 requests, then stop

``C`` keep-alive connections (TCP_NODELAY) each send one POST at a time, the bodies of
BODIES_FILE (one JSON document a line) in turn, and wait for the whole answer before the next
(a closed loop, as wrk's). Latency is measured per request from the write to the last byte of
the answer. Prints one line ``BENCH_JSON {...}`` with wrk's keys (microseconds): requests,
duration_us, p50_us, p90_us, p99_us, max_us, mean_us and the error counts; a non-2xx answer
counts in ``status``. Uses uvloop when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from urllib.parse import urlsplit


async def _read_answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _connection(
    host: str,
    port: int,
    heads: list[bytes],
    state: dict[str, int],
    limit: int | None,
    deadline: float,
    latencies: list[float],
    errors: dict[str, int],
) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        errors["connect"] += 1
        return
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    clock = time.perf_counter
    try:
        while True:
            if limit is not None:
                if state["next"] >= limit:
                    break
            elif clock() >= deadline:
                break
            i = state["next"]
            state["next"] = i + 1
            start = clock()
            writer.write(heads[i % len(heads)])
            try:
                status = await _read_answer(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                errors["read"] += 1
                break
            latencies.append(clock() - start)
            if not 200 <= status < 300:
                errors["status"] += 1
    finally:
        writer.close()


async def run(url: str, bodies: list[bytes], connections: int, seconds: float, limit: int | None):
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    heads = [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    latencies: list[float] = []
    errors = dict.fromkeys(("connect", "read", "write", "status", "timeout"), 0)
    state = {"next": 0}
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(host, port, heads, state, limit, started + seconds, latencies, errors)
            for _ in range(connections)
        )
    )
    duration = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float:
        return latencies[min(n - 1, int(n * q))] * 1e6 if n else 0.0

    return {
        "requests": n,
        "duration_us": int(duration * 1e6),
        "p50_us": pct(0.5),
        "p90_us": pct(0.9),
        "p99_us": pct(0.99),
        "max_us": latencies[-1] * 1e6 if n else 0.0,
        "mean_us": sum(latencies) / n * 1e6 if n else 0.0,
        **errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("bodies")
    parser.add_argument("-c", "--connections", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    parser.add_argument("-n", "--requests", type=int, default=None)
    args = parser.parse_args()
    with open(args.bodies, "rb") as handle:
        bodies = [line.rstrip(b"\n") for line in handle if line.strip()]
    try:
        from uvloop import run as run_loop
    except ImportError:
        run_loop = asyncio.run
    result = run_loop(run(args.url, bodies, args.connections, args.duration, args.requests))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
