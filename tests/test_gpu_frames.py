"""Tables the page draws from snapshots: history per GPU (gaps stay gaps), host, processes."""

from __future__ import annotations

import math

import pandas as pd

from backend.gpu.format import fmt, fmt_bytes
from backend.gpu.frames import gpu_history, host_history, process_table
from backend.gpu.readings import GpuProcess, GpuReading, HostReading, NvmlStatus, Snapshot

HOST = HostReading(12.5, 2, 1, 2, 3, 33.3, 4.0, 5)
STATUS = NvmlStatus(True, "ok")


def snap(seq: int, gpus=(), processes=()) -> Snapshot:
    return Snapshot(seq, 1_700_000_000.0 + seq, STATUS, tuple(gpus), tuple(processes), HOST)


def test_gpu_history_has_a_column_per_gpu_and_nan_for_na():
    snaps = [snap(0, [GpuReading(0, util_gpu=10), GpuReading(1, util_gpu=None)]),
             snap(1, [GpuReading(0, util_gpu=20), GpuReading(1, util_gpu=90)])]
    frame = gpu_history(snaps, "Utilization")
    assert list(frame.columns) == ["GPU 0", "GPU 1"]
    assert frame["GPU 0"].tolist() == [10.0, 20.0]
    assert math.isnan(frame["GPU 1"].iloc[0]) and frame["GPU 1"].iloc[1] == 90.0
    assert frame.index.is_monotonic_increasing
    assert (frame.index[1] - frame.index[0]).total_seconds() == 1.0


def test_memory_history_is_in_gib():
    frame = gpu_history([snap(0, [GpuReading(0, memory_used=3 * 2**30)])], "Memory used")
    assert frame["GPU 0"].tolist() == [3.0]


def test_host_history_columns():
    frame = host_history([snap(0), snap(1)])
    assert list(frame.columns) == ["CPU %", "RAM %"] and frame["CPU %"].tolist() == [12.5, 12.5]


def test_process_table_puts_the_app_first():
    procs = [GpuProcess(0, 10, "compute", 2**20, "other", is_app=False),
             GpuProcess(1, 11, "compute", None, "train", is_app=True, cuda_index=0),
             GpuProcess(0, 12, "compute", 5 * 2**20, "big", is_app=False)]
    table = process_table(snap(0, processes=procs))
    assert table["PID"].tolist() == [11, 12, 10]
    assert table.iloc[0]["cuda"] == "cuda:0" and pd.isna(table.iloc[1]["cuda"])
    assert table.iloc[1]["GPU memory (MiB)"] == 5.0
    assert process_table(snap(0)).empty


def test_formatting():
    assert (fmt(None), fmt(37, "%"), fmt(45, "°C"), fmt(1.26, "W", 1)) == (
        "N/A", "37%", "45 °C", "1.3 W")
    assert (fmt_bytes(None), fmt_bytes(3 * 2**30), fmt_bytes(2**21, "MiB", 0)) == (
        "N/A", "3.0 GiB", "2 MiB")
