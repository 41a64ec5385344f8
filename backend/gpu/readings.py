"""The plain data the GPU monitor produces: one GPU, one GPU process, the host, one snapshot.

Every measured field is `None` when it could not be read (the view shows it as "N/A").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NvmlStatus:
    """Whether NVML answered, and why not when it did not."""

    available: bool
    message: str
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One physical GPU (NVML index) at one moment. Memory in bytes, power in W, clocks in MHz."""

    index: int
    name: str | None = None
    uuid: str | None = None
    util_gpu: int | None = None
    util_memory: int | None = None
    memory_used: int | None = None
    memory_free: int | None = None
    memory_total: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    memory_clock_mhz: int | None = None
    fan_percent: int | None = None
    pstate: int | None = None
    cuda_index: int | None = None  # the index this app's CUDA sees it at; None: not visible
    error: str | None = None  # set when the device itself could not be opened


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process that holds a context on one GPU, with its host-side details."""

    gpu_index: int
    pid: int
    kind: str  # "compute", "graphics" or "compute+graphics"
    gpu_memory: int | None = None  # bytes
    name: str | None = None
    cmdline: str | None = None
    user: str | None = None
    is_app: bool = False  # this app's process, a child of it, or a registered pid
    cuda_index: int | None = None  # for the app's processes: the GPU's index in their CUDA


@dataclass(frozen=True, slots=True)
class HostReading:
    """Host CPU and RAM; CPU percentages are over the time since the previous reading."""

    cpu_percent: float | None
    cpu_count: int | None
    ram_used: int | None
    ram_available: int | None
    ram_total: int | None
    ram_percent: float | None
    app_cpu_percent: float | None  # this process, percent of one core (may exceed 100)
    app_rss: int | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything sampled at one moment; `seq` counts samples from 0 per sampler."""

    seq: int
    time: float  # seconds since the epoch
    status: NvmlStatus
    gpus: tuple[GpuReading, ...]
    processes: tuple[GpuProcess, ...]
    host: HostReading
