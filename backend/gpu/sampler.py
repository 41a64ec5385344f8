"""The background sampler: one thread reads GPUs, their processes and the host every interval
into a ring buffer of `Snapshot`s that any number of viewers read.

`start` is idempotent and takes the first sample before it returns, so `latest` is set at once;
`stop` joins the thread; a stopped sampler can be started again and keeps its history.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import replace

from backend.gpu.host import HostReader
from backend.gpu.nvml import NvmlReader, RawProcess
from backend.gpu.ownership import app_root_pids, is_app_process
from backend.gpu.processes import ProcessCatalog
from backend.gpu.readings import GpuProcess, GpuReading, Snapshot
from backend.gpu.visibility import cuda_index_map

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 1.0
DEFAULT_HISTORY = 900  # 15 minutes at 1 s
THREAD_NAME = "gpu-sampler"


class GpuSampler:
    """Samples every `interval_s` seconds and keeps the last `history_len` snapshots."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S,
                 history_len: int = DEFAULT_HISTORY, nvml: NvmlReader | None = None) -> None:
        if interval_s <= 0 or history_len < 1:
            raise ValueError("interval_s must be > 0 and history_len >= 1")
        self.interval_s = interval_s
        self._nvml = nvml or NvmlReader()
        self._host = HostReader()
        self._catalog = ProcessCatalog()
        self._history: deque[Snapshot] = deque(maxlen=history_len)
        self._lock = threading.Lock()  # guards _history and _seq
        self._life = threading.Lock()  # serialises start/stop
        self._sampling = threading.Lock()  # one sample at a time (the readers keep state)
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def history_len(self) -> int:
        return self._history.maxlen or 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def sample_count(self) -> int:
        """Samples taken since creation (not capped by the ring buffer)."""
        with self._lock:
            return self._seq

    def latest(self) -> Snapshot | None:
        with self._lock:
            return self._history[-1] if self._history else None

    def history(self, since: float | None = None) -> list[Snapshot]:
        """Snapshots oldest first; with `since` (epoch seconds), only those at or after it."""
        with self._lock:
            snaps = list(self._history)
        if since is not None:
            snaps = [s for s in snaps if s.time >= since]
        return snaps

    def start(self) -> None:
        """Start sampling (no-op when running); the first sample is taken before returning."""
        with self._life:
            if self.running:
                return
            self._nvml.open()
            self.sample_once()
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name=THREAD_NAME, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it; NVML is closed."""
        with self._life:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout)
                if self._thread.is_alive():
                    log.warning("gpu sampler thread did not stop within %.1f s", timeout)
            self._thread = None
            self._nvml.close()

    def _run(self, stop: threading.Event) -> None:
        next_at = time.monotonic() + self.interval_s
        while not stop.wait(max(0.0, next_at - time.monotonic())):
            self.sample_once()
            next_at += self.interval_s
            now = time.monotonic()
            if next_at < now:  # fell behind (suspended, overloaded): skip, do not burst
                next_at = now + self.interval_s

    def sample_once(self) -> Snapshot | None:
        """Take one sample into the history now; errors are logged and kept in `last_error`."""
        with self._sampling:
            return self._sample()

    def _sample(self) -> Snapshot | None:
        try:
            status, gpus, raw = self._nvml.read()
            host = self._host.read()
            roots = app_root_pids()
            uuids = [g.uuid for g in gpus]
            own_map = cuda_index_map(os.environ.get("CUDA_VISIBLE_DEVICES"), uuids,
                                     self._nvml.mig_parent)
            gpus = [_with_cuda_index(g, own_map.get(g.index)) for g in gpus]
            processes = [self._process(p, roots, own_map, uuids) for p in raw]
            self._catalog.forget_except({p.pid for p in raw})
        except Exception as exc:  # keep the thread alive whatever a driver does
            error = f"{type(exc).__name__}: {exc}"
            if error != self.last_error:  # one traceback per new error, not one a second
                log.exception("gpu sample failed")
            self.last_error = error
            return None
        self.last_error = None
        with self._lock:
            snap = Snapshot(self._seq, time.time(), status, tuple(gpus), tuple(processes), host)
            self._seq += 1
            self._history.append(snap)
        return snap

    def _process(self, raw: RawProcess, roots: frozenset[int], own_map: dict[int, int],
                 uuids: list[str | None]) -> GpuProcess:
        details = self._catalog.details(raw.pid)
        is_app = is_app_process(raw.pid, details.ancestors, roots)
        cuda_index = None
        if is_app:
            if raw.pid == os.getpid() or not details.environ_read:
                cuda_map = own_map
            else:
                cuda_map = cuda_index_map(details.cuda_visible_devices, uuids,
                                          self._nvml.mig_parent)
            cuda_index = cuda_map.get(raw.gpu_index)
        return GpuProcess(
            gpu_index=raw.gpu_index, pid=raw.pid, kind=raw.kind, gpu_memory=raw.gpu_memory,
            name=details.name, cmdline=details.cmdline, user=details.user,
            is_app=is_app, cuda_index=cuda_index,
        )


def _with_cuda_index(gpu: GpuReading, cuda_index: int | None) -> GpuReading:
    return replace(gpu, cuda_index=cuda_index)
