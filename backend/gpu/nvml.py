"""Reading NVIDIA GPUs through NVML (package nvidia-ml-py, module `pynvml`).

Nothing here raises for a missing library, a missing driver or a field a card does not support:
a missing NVML gives an unavailable `NvmlStatus`, an unreadable field gives None.
`pynvml` is imported when the reader opens, so a stand-in module can take its place in tests.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backend.gpu.readings import GpuReading, NvmlStatus

log = logging.getLogger(__name__)

PSTATE_UNKNOWN = 32


@dataclass(frozen=True, slots=True)
class RawProcess:
    """A process as NVML lists it on one GPU (no host-side details yet)."""

    gpu_index: int
    pid: int
    kind: str
    gpu_memory: int | None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _cuda_version(value: int) -> str:
    return f"{value // 1000}.{value % 1000 // 10}"


class NvmlReader:
    """Opens NVML once and reads every GPU and its processes on demand.

    When NVML cannot be opened, `read` retries opening it at most every `retry_s` seconds
    (a driver can come up after the app).
    """

    def __init__(self, retry_s: float = 60.0) -> None:
        self.retry_s = retry_s
        self._nvml: Any = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._status = NvmlStatus(False, "NVML has not been opened yet.")
        self._last_try = float("-inf")
        self._static: dict[int, tuple[str | None, str | None]] = {}  # index -> (name, uuid)

    @property
    def status(self) -> NvmlStatus:
        return self._status

    def open(self) -> NvmlStatus:
        """Load and initialise NVML; the status says why not when it cannot."""
        if self._nvml is not None:
            return self._status
        self._last_try = time.monotonic()
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError as exc:
            self._status = NvmlStatus(False, f"nvidia-ml-py (pynvml) is not installed: {exc}")
            return self._status
        errors = tuple(
            cls for cls in (getattr(nvml, "NVMLError", None),
                            getattr(nvml, "NVMLLibraryMismatchError", None))
            if isinstance(cls, type)
        )
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, OSError, ...
            self._status = NvmlStatus(False, f"NVML is not available: {exc or type(exc).__name__}")
            return self._status
        self._nvml, self._errors = nvml, errors + (AttributeError,)
        self._static.clear()
        cuda = self._field(nvml.nvmlSystemGetCudaDriverVersion)
        self._status = NvmlStatus(
            True, "NVML is available.",
            driver_version=self._text_field(nvml.nvmlSystemGetDriverVersion),
            cuda_driver_version=_cuda_version(cuda) if isinstance(cuda, int) else None,
            nvml_version=self._text_field(nvml.nvmlSystemGetNVMLVersion),
        )
        return self._status

    def close(self) -> None:
        """Shut NVML down (the next `read` or `open` opens it again)."""
        if self._nvml is not None:
            self._field(self._nvml.nvmlShutdown)
            self._nvml = None
            self._status = NvmlStatus(False, "NVML is closed.")

    def _field(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), or None when NVML cannot give it (not supported, no permission, ...)."""
        try:
            return fn(*args)
        except self._errors as exc:
            log.debug("NVML %s: %s", getattr(fn, "__name__", fn), exc)
            return None

    def _text_field(self, fn: Callable[..., Any], *args: Any) -> str | None:
        value = self._field(fn, *args)
        return None if value is None else _text(value)

    def mig_parent(self, mig_uuid: str) -> int | None:
        """The NVML index of the GPU holding the MIG device `mig_uuid`."""
        nvml = self._nvml
        if nvml is None:
            return None
        handle = self._field(nvml.nvmlDeviceGetHandleByUUID, mig_uuid)
        parent = None if handle is None else self._field(
            nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle, handle)
        return None if parent is None else self._field(nvml.nvmlDeviceGetIndex, parent)

    def _static_info(self, index: int) -> tuple[str | None, str | None]:
        if index not in self._static:
            handle = self._field(self._nvml.nvmlDeviceGetHandleByIndex, index)
            if handle is None:
                return None, None
            info = (self._text_field(self._nvml.nvmlDeviceGetName, handle),
                    self._text_field(self._nvml.nvmlDeviceGetUUID, handle))
            self._static[index] = info
        return self._static[index]

    def read(self) -> tuple[NvmlStatus, list[GpuReading], list[RawProcess]]:
        """Every GPU and the processes on it, now. Never raises."""
        if self._nvml is None:
            if time.monotonic() - self._last_try >= self.retry_s:
                self.open()
            if self._nvml is None:
                return self._status, [], []
        nvml = self._nvml
        count = self._field(nvml.nvmlDeviceGetCount)
        if count is None:
            return NvmlStatus(False, "NVML could not count the GPUs."), [], []
        gpus: list[GpuReading] = []
        processes: list[RawProcess] = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except self._errors as exc:
                gpus.append(GpuReading(index=index, error=f"cannot open GPU {index}: {exc}"))
                continue
            gpus.append(self._read_gpu(index, handle))
            processes.extend(self._read_processes(index, handle))
        return self._status, gpus, processes

    def _read_gpu(self, index: int, handle: Any) -> GpuReading:
        nvml, field = self._nvml, self._field
        name, uuid = self._static_info(index)
        util = field(nvml.nvmlDeviceGetUtilizationRates, handle)
        mem = field(nvml.nvmlDeviceGetMemoryInfo, handle)
        power_mw = field(nvml.nvmlDeviceGetPowerUsage, handle)
        limit_mw = field(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        if limit_mw is None:
            limit_mw = field(nvml.nvmlDeviceGetPowerManagementLimit, handle)
        pstate = field(nvml.nvmlDeviceGetPerformanceState, handle)
        return GpuReading(
            index=index, name=name, uuid=uuid,
            util_gpu=getattr(util, "gpu", None),
            util_memory=getattr(util, "memory", None),
            memory_used=getattr(mem, "used", None),
            memory_free=getattr(mem, "free", None),
            memory_total=getattr(mem, "total", None),
            temperature_c=field(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
            power_w=None if power_mw is None else power_mw / 1000.0,
            power_limit_w=None if limit_mw is None else limit_mw / 1000.0,
            sm_clock_mhz=field(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
            memory_clock_mhz=field(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM),
            fan_percent=field(nvml.nvmlDeviceGetFanSpeed, handle),
            pstate=None if pstate in (None, PSTATE_UNKNOWN) else pstate,
        )

    def _process_list(self, handle: Any, kind: str) -> list[Any]:
        """Compute or graphics processes; falls back to the v2 call on older drivers."""
        name = f"nvmlDeviceGet{kind.capitalize()}RunningProcesses"
        procs = self._field(getattr(self._nvml, name), handle)
        if procs is None and hasattr(self._nvml, f"{name}_v2"):
            procs = self._field(getattr(self._nvml, f"{name}_v2"), handle)
        return list(procs or [])

    def _read_processes(self, index: int, handle: Any) -> list[RawProcess]:
        merged: dict[int, RawProcess] = {}
        for kind in ("compute", "graphics"):
            for proc in self._process_list(handle, kind):
                pid = getattr(proc, "pid", None)
                if pid is None:
                    continue
                used, label = getattr(proc, "usedGpuMemory", None), kind
                seen = merged.get(pid)
                if seen is not None:  # listed as both: one process, one context
                    used = max((m for m in (seen.gpu_memory, used) if m is not None), default=None)
                    label = seen.kind if seen.kind.endswith(kind) else f"{seen.kind}+{kind}"
                merged[pid] = RawProcess(index, pid, label, used)
        return list(merged.values())
