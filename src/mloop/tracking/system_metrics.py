"""System metrics of a run, sampled in the background: CPU, memory, disk and network I/O, and
GPUs when NVIDIA's management library is present. Names follow MLflow's (``system/...``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mloop.tracking")

DEFAULT_INTERVAL = 10.0
MB = 1024 * 1024


class _Gpus:
    """NVIDIA GPUs through pynvml, if it is installed and a driver answers; else none."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            self._nvml = pynvml
            self.handles = [
                pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
            ]
        except Exception:  # no library, no driver, no device: no GPU metrics
            self.handles = []

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, handle in enumerate(self.handles):
            try:
                util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception:
                continue
            out[f"system/gpu_{i}_utilization_percentage"] = float(util.gpu)
            out[f"system/gpu_{i}_memory_usage_megabytes"] = memory.used / MB
            out[f"system/gpu_{i}_memory_usage_percentage"] = 100.0 * memory.used / memory.total
        return out


def sample_system(disk_path: str = "/") -> dict[str, float]:
    """One reading of the machine's CPU, memory and disk (network and I/O are counters: the
    monitor reports them as the change since it started)."""
    import psutil

    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(disk_path)
    return {
        "system/cpu_utilization_percentage": float(psutil.cpu_percent(interval=None)),
        "system/system_memory_usage_megabytes": (memory.total - memory.available) / MB,
        "system/system_memory_usage_percentage": float(memory.percent),
        "system/disk_usage_percentage": float(disk.percent),
        "system/disk_usage_megabytes": disk.used / MB,
        "system/disk_available_megabytes": disk.free / MB,
    }


class SystemMetricsMonitor:
    """Samples every ``interval`` seconds and hands each reading to ``log(metrics, step)``."""

    def __init__(
        self,
        log_metrics: Callable[[dict[str, float], int], None],
        *,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        if interval <= 0:
            raise ValueError("the sampling interval must be positive")
        self._log = log_metrics
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._step = 0
        self._gpus: _Gpus | None = None
        self._net0: Any = None
        self._disk0: Any = None

    def _counters(self) -> dict[str, float]:
        import psutil

        out: dict[str, float] = {}
        net = psutil.net_io_counters()
        if net is not None and self._net0 is not None:
            out["system/network_receive_megabytes"] = (net.bytes_recv - self._net0.bytes_recv) / MB
            out["system/network_transmit_megabytes"] = (net.bytes_sent - self._net0.bytes_sent) / MB
        io = psutil.disk_io_counters()
        if io is not None and self._disk0 is not None:
            out["system/disk_read_megabytes"] = (io.read_bytes - self._disk0.read_bytes) / MB
            out["system/disk_write_megabytes"] = (io.write_bytes - self._disk0.write_bytes) / MB
        return out

    def sample(self) -> dict[str, float]:
        reading = sample_system()
        reading.update(self._counters())
        if self._gpus is not None:
            reading.update(self._gpus.sample())
        return reading

    def start(self) -> None:
        import psutil

        self._net0 = psutil.net_io_counters()
        self._disk0 = psutil.disk_io_counters()
        psutil.cpu_percent(interval=None)  # the first reading primes the counter
        self._gpus = _Gpus()
        self._thread = threading.Thread(target=self._run, name="mloop-system-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._log(self.sample(), self._step)
                self._step += 1
            except Exception:  # a failed reading must not end the run
                log.exception("sampling system metrics failed")

    def stop(self) -> None:
        """Stop sampling, after one last reading."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        self._thread = None
        try:
            self._log(self.sample(), self._step)
            self._step += 1
        except Exception:
            log.exception("sampling system metrics failed")
