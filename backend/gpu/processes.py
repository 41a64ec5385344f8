"""Host-side details of the processes NVML reports: name, command line, user, parents.

Details are cached per (pid, start time), so a process is read from /proc once, not on every
sample; entries for processes no longer reported are dropped by `forget_except`.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class ProcessDetails:
    """What the host knows of one pid; fields are None when unreadable (gone, no permission)."""

    name: str | None
    cmdline: str | None
    user: str | None
    ancestors: tuple[int, ...]
    cuda_visible_devices: str | None  # its environment's value; None: unset or unreadable
    environ_read: bool  # False when the environment could not be read


_UNKNOWN = ProcessDetails(None, None, None, (), None, False)


def _safe(fn, default=None):
    try:
        return fn()
    except (psutil.Error, OSError):
        return default


def read_details(pid: int) -> ProcessDetails:
    """Read one process's details now (never raises)."""
    try:
        proc = psutil.Process(pid)
    except (psutil.Error, OSError):
        return _UNKNOWN
    with proc.oneshot():
        name = _safe(proc.name)
        argv = _safe(proc.cmdline)
        user = _safe(proc.username)
        parents = _safe(proc.parents, [])
    environ = _safe(proc.environ)
    return ProcessDetails(
        name=name,
        cmdline=" ".join(argv) if argv else None,
        user=user,
        ancestors=tuple(p.pid for p in parents),
        cuda_visible_devices=environ.get("CUDA_VISIBLE_DEVICES") if environ is not None else None,
        environ_read=environ is not None,
    )


def _start_time(pid: int) -> float | None:
    return _safe(lambda: psutil.Process(pid).create_time())


class ProcessCatalog:
    """Cached `read_details` keyed by pid and start time (a reused pid is read afresh)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[float | None, ProcessDetails]] = {}

    def details(self, pid: int) -> ProcessDetails:
        started = _start_time(pid)
        cached = self._cache.get(pid)
        if cached is not None and cached[0] == started and started is not None:
            return cached[1]
        details = read_details(pid) if started is not None else _UNKNOWN
        self._cache[pid] = (started, details)
        return details

    def forget_except(self, pids: set[int]) -> None:
        """Drop cached entries for pids not in `pids`."""
        for pid in list(self._cache):
            if pid not in pids:
                del self._cache[pid]
