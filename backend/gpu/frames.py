"""pandas tables from snapshots, for the page: per-GPU metric history, host history, processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import pandas as pd

from backend.gpu.format import GIB, MIB
from backend.gpu.readings import GpuReading, Snapshot

# Chart name -> (unit, how to read it off a GpuReading).
GPU_METRICS: dict[str, tuple[str, Callable[[GpuReading], float | None]]] = {
    "Utilization": ("%", lambda g: g.util_gpu),
    "Memory used": ("GiB", lambda g: None if g.memory_used is None else g.memory_used / GIB),
    "Power": ("W", lambda g: g.power_w),
    "Temperature": ("°C", lambda g: g.temperature_c),
}


def _times(snaps: Sequence[Snapshot]) -> pd.DatetimeIndex:
    """Sample times as naive local (server) times, which charts show as they are."""
    local = datetime.now().astimezone().tzinfo
    index = pd.to_datetime([s.time for s in snaps], unit="s", utc=True)
    return pd.DatetimeIndex(index.tz_convert(local).tz_localize(None), name="time")


def gpu_history(snaps: Sequence[Snapshot], metric: str) -> pd.DataFrame:
    """One column per GPU ("GPU 0", ...), one row per snapshot; unreadable values are NaN."""
    _, read = GPU_METRICS[metric]
    rows = [{f"GPU {g.index}": read(g) for g in s.gpus} for s in snaps]
    return pd.DataFrame(rows, index=_times(snaps), dtype="float64")


def host_history(snaps: Sequence[Snapshot]) -> pd.DataFrame:
    """Host CPU % and RAM % per snapshot."""
    rows = [{"CPU %": s.host.cpu_percent, "RAM %": s.host.ram_percent} for s in snaps]
    return pd.DataFrame(rows, index=_times(snaps), columns=["CPU %", "RAM %"], dtype="float64")


PROCESS_COLUMNS = ["This app", "GPU", "cuda", "PID", "User", "Name", "GPU memory (MiB)", "Type",
                   "Command line"]


def process_table(snap: Snapshot) -> pd.DataFrame:
    """The latest snapshot's GPU processes: this app's first, then by GPU and memory."""
    rows = [{
        "This app": p.is_app,
        "GPU": p.gpu_index,
        "cuda": None if p.cuda_index is None else f"cuda:{p.cuda_index}",
        "PID": p.pid,
        "User": p.user,
        "Name": p.name,
        "GPU memory (MiB)": None if p.gpu_memory is None else p.gpu_memory / MIB,
        "Type": p.kind,
        "Command line": p.cmdline,
    } for p in snap.processes]
    frame = pd.DataFrame(rows, columns=PROCESS_COLUMNS)
    if frame.empty:
        return frame
    frame = frame.sort_values(["This app", "GPU", "GPU memory (MiB)"],
                              ascending=[False, True, False], na_position="last")
    return frame.reset_index(drop=True)
