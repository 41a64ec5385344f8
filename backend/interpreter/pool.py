"""One kernel and one working folder per browser session, a cap on live kernels, and a reaper
that shuts down the kernels of idle or closed sessions (and deletes their folders)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.interpreter.kernel import KernelSession

log = logging.getLogger(__name__)

DEFAULT_MAX_KERNELS = 4
DEFAULT_IDLE_TIMEOUT_S = 30 * 60.0
DEFAULT_CLOSED_GRACE_S = 120.0


class KernelLimitError(RuntimeError):
    """Every kernel slot is taken by other sessions."""


@dataclass
class _Entry:
    folder: Path
    kernel: KernelSession
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    starting: bool = False


class KernelPool:
    """Kernels keyed by session. `is_active(key)` says whether a session is still open; sessions
    that are closed for `closed_grace_s`, or unused for `idle_timeout_s`, are reaped."""

    def __init__(
        self, root: Path | None = None, max_kernels: int = DEFAULT_MAX_KERNELS,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        closed_grace_s: float = DEFAULT_CLOSED_GRACE_S,
        is_active: Callable[[str], bool] | None = None, **kernel_options: Any,
    ) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="workbench-kernels-"))
        self.max_kernels = max_kernels
        self.idle_timeout_s = idle_timeout_s
        self.closed_grace_s = closed_grace_s
        self.is_active = is_active or (lambda _key: True)
        self.kernel_options = kernel_options
        self._entries: dict[str, _Entry] = {}
        self._reaped: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def _entry(self, key: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                folder = self.root / uuid.uuid4().hex
                workdir = folder / "files"
                workdir.mkdir(parents=True)
                kernel = KernelSession(workdir, log_path=folder / "kernel.log",
                                       **self.kernel_options)
                entry = self._entries[key] = _Entry(folder, kernel)
            entry.last_used = time.monotonic()
            return entry

    def workdir(self, key: str) -> Path:
        """The session's working folder (created on first use; no kernel is started)."""
        return self._entry(key).kernel.workdir

    def live_kernels(self) -> int:
        with self._lock:
            return sum(1 for e in self._entries.values() if e.starting or e.kernel.alive)

    def _reserve(self, key: str, entry: _Entry) -> None:
        """Claim a kernel slot for `entry`, reaping first when all are taken."""
        for attempt in range(2):
            with self._lock:
                if entry.kernel.alive:
                    return
                busy = sum(1 for k, e in self._entries.items()
                           if k != key and (e.starting or e.kernel.alive))
                if busy < self.max_kernels:
                    entry.starting = True
                    return
            if attempt == 0:
                self.reap()
        raise KernelLimitError(
            f"All {self.max_kernels} Python kernels of this server are in use by other "
            f"sessions. Try again in a few minutes (kernels idle for "
            f"{self.idle_timeout_s / 60:.0f} min are shut down), or ask the admin to raise "
            "INTERPRETER_MAX_KERNELS.")

    @contextmanager
    def session(self, key: str) -> Iterator[KernelSession]:
        """The session's kernel, started if needed, held for one use (the reaper waits)."""
        entry = self._entry(key)
        with entry.lock:
            try:
                self._reserve(key, entry)
                entry.kernel.start()
            finally:
                entry.starting = False
            try:
                yield entry.kernel
            finally:
                entry.last_used = time.monotonic()

    def interrupt(self, key: str) -> bool:
        """Interrupt the session's running cell (no lock: it works while a cell runs)."""
        with self._lock:
            entry = self._entries.get(key)
        return entry is not None and entry.kernel.interrupt()

    def release(self, key: str) -> None:
        """Shut the session's kernel down and delete its folder."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None:
            with entry.lock:
                entry.kernel.shutdown()
                shutil.rmtree(entry.folder, ignore_errors=True)

    def reaped_notice(self, key: str) -> str | None:
        """Why the session's kernel and files were removed, once (then forgotten)."""
        with self._lock:
            return self._reaped.pop(key, None)

    def reap(self, now: float | None = None) -> list[str]:
        """Release idle and closed sessions that are not running anything; returns their keys."""
        now = time.monotonic() if now is None else now
        with self._lock:
            candidates = list(self._entries.items())
        reaped = []
        for key, entry in candidates:
            if not self._expired(key, entry, now):
                continue
            if not entry.lock.acquire(blocking=False):
                continue  # running a cell right now
            try:
                with self._lock:
                    idle = now - entry.last_used
                    closed = not self.is_active(key)
                    if self._entries.get(key) is not entry or not self._expired(key, entry, now):
                        continue
                    del self._entries[key]
                    if not closed:
                        self._reaped[key] = (
                            f"The Python kernel was shut down after {idle / 60:.0f} minutes "
                            "without use, and its files were removed: variables are lost. "
                            "A new kernel starts when you run code.")
                entry.kernel.shutdown()
                shutil.rmtree(entry.folder, ignore_errors=True)
                reaped.append(key)
            finally:
                entry.lock.release()
        with self._lock:
            for key in [k for k in self._reaped if not self.is_active(k)]:
                del self._reaped[key]
        if reaped:
            log.info("reaped %d idle or closed interpreter sessions", len(reaped))
        return reaped

    def _expired(self, key: str, entry: _Entry, now: float) -> bool:
        idle = now - entry.last_used
        return idle >= self.idle_timeout_s or (
            idle >= self.closed_grace_s and not self.is_active(key))

    def restart(self, key: str) -> None:
        """A fresh kernel for the session (variables gone, files kept)."""
        entry = self._entry(key)
        with entry.lock:
            entry.kernel.shutdown()
        with self.session(key):
            pass

    def start_reaper(self, interval_s: float = 30.0) -> None:
        """Reap every `interval_s` seconds in a daemon thread, until `close()`."""
        if self._reaper is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.reap()
                except Exception:
                    log.exception("kernel reaper")

        self._reaper = threading.Thread(target=loop, name="kernel-reaper", daemon=True)
        self._reaper.start()

    def close(self) -> None:
        """Stop the reaper, every kernel, and delete every folder."""
        self._stop.set()
        with self._lock:
            keys = list(self._entries)
        for key in keys:
            self.release(key)
        shutil.rmtree(self.root, ignore_errors=True)
