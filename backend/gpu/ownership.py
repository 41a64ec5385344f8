"""Which processes are "this app's": this process, its descendants, and registered pids.

Training runs are child processes and count on their own; code that starts GPU work some other
way (a detached launcher, say) registers the pid with `register_app_pid`. Descendants of a
registered pid count too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

_lock = threading.Lock()
_registered: set[int] = set()


def register_app_pid(pid: int) -> None:
    """Count `pid` (and its descendants) as this app's."""
    with _lock:
        _registered.add(int(pid))


def unregister_app_pid(pid: int) -> None:
    """Forget a pid registered with `register_app_pid` (no error when it was not)."""
    with _lock:
        _registered.discard(int(pid))


def app_root_pids() -> frozenset[int]:
    """This process and the registered pids."""
    with _lock:
        return frozenset(_registered | {os.getpid()})


def is_app_process(pid: int, ancestors: Iterable[int], roots: frozenset[int]) -> bool:
    """True when `pid` or one of its `ancestors` is one of the app's `roots`."""
    return pid in roots or any(parent in roots for parent in ancestors)
