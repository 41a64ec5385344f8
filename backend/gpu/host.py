"""Host CPU and RAM through psutil, with CPU percentages over the time since the last reading.

It keeps its own CPU counters (it does not use psutil.cpu_percent(), whose state is shared by
every caller in the process).
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

from backend.gpu.readings import HostReading


def _busy_and_total(times: Any) -> tuple[float, float]:
    """Busy and total CPU seconds, counted as psutil.cpu_percent counts them."""
    total = sum(times)
    # On Linux, guest time is already counted in user time.
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


class HostReader:
    """Reads host CPU and RAM and this process's CPU and RSS."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._last_system: tuple[float, float] | None = None
        self._last_app: tuple[float, float] | None = None  # (cpu seconds, monotonic)
        self._cpu_count = psutil.cpu_count(logical=True)

    def _system_cpu_percent(self) -> float | None:
        busy, total = _busy_and_total(psutil.cpu_times())
        last, self._last_system = self._last_system, (busy, total)
        if last is None or total <= last[1]:
            return None
        return max(0.0, min(100.0, 100.0 * (busy - last[0]) / (total - last[1])))

    def _app_cpu_and_rss(self) -> tuple[float | None, int | None]:
        try:
            with self._process.oneshot():
                times = self._process.cpu_times()
                rss = self._process.memory_info().rss
        except psutil.Error:
            return None, None
        now, cpu = time.monotonic(), times.user + times.system
        last, self._last_app = self._last_app, (cpu, now)
        if last is None or now <= last[1]:
            return None, rss
        return max(0.0, 100.0 * (cpu - last[0]) / (now - last[1])), rss

    def read(self) -> HostReading:
        """One reading; the first one has no CPU percentages (nothing to compare with yet)."""
        cpu = self._system_cpu_percent()
        app_cpu, app_rss = self._app_cpu_and_rss()
        try:
            mem = psutil.virtual_memory()
            ram = (mem.used, mem.available, mem.total, mem.percent)
        except (psutil.Error, OSError):
            ram = (None, None, None, None)
        return HostReading(cpu, self._cpu_count, *ram, app_cpu_percent=app_cpu, app_rss=app_rss)
