"""A stand-in for `pynvml`, for tests only: CI and this machine have no GPU and no NVIDIA driver.

It keeps the real module's constants and error classes (NVMLError_NotSupported and the rest)
and replaces only the calls that would reach the driver. Install it with `install_fake_nvml`.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass, field
from types import SimpleNamespace

real = importlib.import_module("pynvml")


@dataclass
class FakeGpu:
    """One fake device; the NVML function names in `unsupported` raise NVMLError_NotSupported."""

    name: str | bytes = "NVIDIA Fake 80GB"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    util: tuple[int, int] = (37, 12)
    memory: tuple[int, int, int] = (10 * 2**30, 70 * 2**30, 80 * 2**30)  # used, free, total
    temperature: int = 45
    power_mw: int = 123_456
    limit_mw: int = 700_000
    sm_clock: int = 1980
    mem_clock: int = 2619
    fan: int = 30
    pstate: int = 0
    compute: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)
    lost: bool = False  # opening its handle raises NVMLError_GPUIsLost


def _check(gpu: FakeGpu, name: str) -> None:
    if name in gpu.unsupported:
        raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)


def make_fake_nvml(gpus: list[FakeGpu], init_error: int | None = None) -> types.ModuleType:
    """A module that answers like pynvml for `gpus`; `init_error` makes nvmlInit fail."""
    fake = types.ModuleType("pynvml")
    for key, value in vars(real).items():
        if key.startswith("NVML"):  # constants, NVMLError and its subclasses
            setattr(fake, key, value)
    fake.calls = {"init": 0, "shutdown": 0}
    fake.gpus = gpus

    def init() -> None:
        if init_error is not None:
            raise real.NVMLError(init_error)
        fake.calls["init"] += 1

    def shutdown() -> None:
        fake.calls["shutdown"] += 1

    def handle(index: int) -> FakeGpu:
        if not 0 <= index < len(gpus):
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        if gpus[index].lost:
            raise real.NVMLError(real.NVML_ERROR_GPU_IS_LOST)
        return gpus[index]

    def getter(name: str, read):
        def fn(gpu: FakeGpu, *args):
            _check(gpu, name)
            return read(gpu, *args)
        fn.__name__ = name
        return fn

    def procs(attr: str):
        return lambda g: [SimpleNamespace(pid=pid, usedGpuMemory=used)
                          for pid, used in getattr(g, attr)]

    fake.nvmlInit = init
    fake.nvmlShutdown = shutdown
    fake.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    fake.nvmlSystemGetCudaDriverVersion = lambda: 12040
    fake.nvmlSystemGetNVMLVersion = lambda: b"12.550.54.15"
    fake.nvmlDeviceGetCount = lambda: len(gpus)
    fake.nvmlDeviceGetHandleByIndex = handle
    readers = {
        "nvmlDeviceGetName": lambda g: g.name,
        "nvmlDeviceGetUUID": lambda g: g.uuid,
        "nvmlDeviceGetUtilizationRates": lambda g: SimpleNamespace(gpu=g.util[0],
                                                                   memory=g.util[1]),
        "nvmlDeviceGetMemoryInfo": lambda g: SimpleNamespace(used=g.memory[0], free=g.memory[1],
                                                             total=g.memory[2]),
        "nvmlDeviceGetTemperature": lambda g, sensor: g.temperature,
        "nvmlDeviceGetPowerUsage": lambda g: g.power_mw,
        "nvmlDeviceGetEnforcedPowerLimit": lambda g: g.limit_mw,
        "nvmlDeviceGetPowerManagementLimit": lambda g: g.limit_mw,
        "nvmlDeviceGetClockInfo": lambda g, kind: (g.sm_clock if kind == real.NVML_CLOCK_SM
                                                   else g.mem_clock),
        "nvmlDeviceGetFanSpeed": lambda g: g.fan,
        "nvmlDeviceGetPerformanceState": lambda g: g.pstate,
        "nvmlDeviceGetComputeRunningProcesses": procs("compute"),
        "nvmlDeviceGetComputeRunningProcesses_v2": procs("compute"),
        "nvmlDeviceGetGraphicsRunningProcesses": procs("graphics"),
        "nvmlDeviceGetGraphicsRunningProcesses_v2": procs("graphics"),
        "nvmlDeviceGetIndex": lambda g: gpus.index(g),
    }
    for name, read in readers.items():
        setattr(fake, name, getter(name, read))

    def by_uuid(uuid: str) -> FakeGpu:
        for gpu in gpus:  # a MIG UUID "MIG-<gpu uuid>/..." resolves to its parent here
            if uuid == gpu.uuid or uuid.startswith(f"MIG-{gpu.uuid}/"):
                return gpu
        raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)

    fake.nvmlDeviceGetHandleByUUID = by_uuid
    fake.nvmlDeviceGetDeviceHandleFromMigDeviceHandle = lambda h: h
    return fake


def install_fake_nvml(monkeypatch, gpus: list[FakeGpu], init_error: int | None = None):
    """Put a fake pynvml in sys.modules for the test (monkeypatch undoes it)."""
    fake = make_fake_nvml(gpus, init_error)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake
