"""System metrics of a run: CPU, memory, disk and network sampled in the background under
MLflow's names, with increasing steps, and a last sample when the run ends."""

from __future__ import annotations

import threading
import time

import pytest

import mloop
from fluent.support import Target
from mloop.client import MloopClient
from mloop.core.errors import NotFound
from mloop.tracking import SystemMetricsMonitor
from mloop.tracking.system_metrics import _Gpus

GUARD = 60.0
EXPECTED = {
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/system_memory_usage_percentage",
    "system/disk_usage_percentage",
    "system/disk_usage_megabytes",
    "system/disk_available_megabytes",
    "system/network_receive_megabytes",
    "system/network_transmit_megabytes",
    "system/disk_read_megabytes",
    "system/disk_write_megabytes",
}


def _no_gpu() -> None:
    if _Gpus().handles:
        pytest.skip("this machine has an NVIDIA GPU: GPU metrics are expected here")


class Readings:
    def __init__(self) -> None:
        self.items: list[tuple[dict[str, float], int, str]] = []
        self.lock = threading.Lock()

    def __call__(self, values: dict[str, float], step: int) -> None:
        with self.lock:
            self.items.append((values, step, threading.current_thread().name))

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)


def test_the_monitor_samples_with_increasing_steps_and_once_more_on_stop() -> None:
    _no_gpu()
    readings = Readings()
    monitor = SystemMetricsMonitor(readings, interval=0.02)
    monitor.start()
    deadline = time.monotonic() + GUARD
    while len(readings) < 3:
        assert time.monotonic() < deadline, "no samples"
        time.sleep(0.01)
    monitor.stop()
    count = len(readings)
    monitor.stop()  # stopping twice is harmless
    assert len(readings) == count
    assert [step for _, step, _ in readings.items] == list(range(count))
    *sampled, (last, _, thread) = readings.items
    assert {name for _, _, name in sampled} == {"mloop-system-metrics"}
    assert thread == threading.current_thread().name  # the last sample is taken by stop()
    for values, _, _ in readings.items:
        assert set(values) == EXPECTED  # no GPU metrics without a GPU
        assert 0 <= values["system/cpu_utilization_percentage"] <= 100
        assert 0 < values["system/system_memory_usage_percentage"] <= 100
        assert values["system/disk_available_megabytes"] > 0
        assert values["system/network_receive_megabytes"] >= 0
        assert values["system/disk_write_megabytes"] >= 0
    assert last["system/system_memory_usage_megabytes"] > 0


def test_a_monitor_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        SystemMetricsMonitor(lambda values, step: None, interval=0)


def test_a_failed_reading_does_not_end_sampling(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def flaky(values: dict[str, float], step: int) -> None:
        calls.append(step)
        if len(calls) == 1:
            raise RuntimeError("the store hiccuped")

    monitor = SystemMetricsMonitor(flaky, interval=0.02)
    monitor.start()
    deadline = time.monotonic() + GUARD
    while len(calls) < 3:
        assert time.monotonic() < deadline, "sampling stopped after a failure"
        time.sleep(0.01)
    monitor.stop()
    assert "sampling system metrics failed" in caplog.text
    assert calls[0] == calls[1] == 0  # the failed step is taken again


def _system_latest(client: MloopClient, run_id: str) -> dict[str, float]:
    try:
        metrics = client.get_run(run_id).metrics
    except NotFound:
        return {}  # the run's creation has not been sent yet
    return {k: v for k, v in metrics.items() if k.startswith("system/")}


def _system_history(client: MloopClient, run_id: str) -> dict[str, list[int]]:
    return {
        key: [p.step for p in client.metric_history(run_id, key)]
        for key in _system_latest(client, run_id)
    }


def test_a_run_logs_system_metrics_when_asked(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_gpu()
    monkeypatch.setenv("MLOOP_SYSTEM_METRICS_INTERVAL", "0.02")
    monkeypatch.setenv("MLOOP_TRACKING_FLUSH_SECONDS", "0.02")
    target.init()
    client = target.client
    with mloop.start_run(log_system_metrics=True) as run:
        deadline = time.monotonic() + GUARD
        while set(_system_latest(client, run.run_id)) != EXPECTED:  # sent while the run goes on
            assert time.monotonic() < deadline, "no system metrics arrived"
            time.sleep(0.02)
        mloop.log_metric("loss", 0.5)
    assert client.get_run(run.run_id).metrics["loss"] == 0.5

    with mloop.start_run() as quiet:  # off unless asked (MLOOP_SYSTEM_METRICS is not set)
        mloop.log_metric("loss", 0.4)
    assert _system_latest(client, quiet.run_id) == {}


def test_system_metrics_have_one_value_per_step_in_order(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_gpu()
    monkeypatch.setenv("MLOOP_SYSTEM_METRICS_INTERVAL", "0.02")
    target.init()
    client = target.client
    with mloop.start_run(log_system_metrics=True) as run:
        deadline = time.monotonic() + GUARD
        while True:  # a few samples, as the monitor takes them
            mloop.flush()
            if len(client.get_run(run.run_id).metrics) == len(EXPECTED):
                cpu = client.metric_history(run.run_id, "system/cpu_utilization_percentage")
                if len(cpu) >= 3:
                    break
            assert time.monotonic() < deadline, "no system metrics arrived"
            time.sleep(0.02)
    history = _system_history(client, run.run_id)
    assert set(history) == EXPECTED
    steps = history["system/cpu_utilization_percentage"]
    assert steps == list(range(len(steps)))  # one value per step, steps increasing
    assert all(s == steps for s in history.values())  # every metric sampled together


def test_the_setting_turns_system_metrics_on_for_every_run(
    local: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOOP_SYSTEM_METRICS", "true")
    monkeypatch.setenv("MLOOP_SYSTEM_METRICS_INTERVAL", "3600")
    local.init()
    # the interval is long: the last sample, taken when a run ends, is all each run gets
    with mloop.start_run() as run, mloop.start_run(nested=True) as child:
        pass
    assert set(_system_history(local.client, run.run_id)) >= {"system/cpu_utilization_percentage"}
    assert _system_history(local.client, run.run_id)["system/cpu_utilization_percentage"] == [0]
    assert _system_history(local.client, child.run_id)["system/cpu_utilization_percentage"] == [0]
    with mloop.start_run(log_system_metrics=False) as off:
        pass
    assert _system_history(local.client, off.run_id) == {}
