"""GPU monitoring on NVML: readings, a shared background sampler with history, app processes.

Plain library (no Streamlit, no pandas): `from backend.gpu import GpuSampler`.
Data-frame helpers for the page are in `backend.gpu.frames` (imports pandas).
"""

from backend.gpu.nvml import NvmlReader
from backend.gpu.ownership import app_root_pids, register_app_pid, unregister_app_pid
from backend.gpu.readings import GpuProcess, GpuReading, HostReading, NvmlStatus, Snapshot
from backend.gpu.sampler import DEFAULT_HISTORY, DEFAULT_INTERVAL_S, GpuSampler
from backend.gpu.visibility import cuda_index_map, visible_indices

__all__ = [
    "DEFAULT_HISTORY", "DEFAULT_INTERVAL_S", "GpuProcess", "GpuReading", "GpuSampler",
    "HostReading", "NvmlReader", "NvmlStatus", "Snapshot", "app_root_pids", "cuda_index_map",
    "register_app_pid", "unregister_app_pid", "visible_indices",
]
