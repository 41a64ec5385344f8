"""NVML reading: the real library where it is (no GPU here), field-level N/A through a stand-in."""

from __future__ import annotations

import sys

import pytest
from gpu_fake_nvml import FakeGpu, install_fake_nvml, real

from backend.gpu.format import NA, fmt, fmt_pstate, fmt_ratio
from backend.gpu.nvml import NvmlReader


def test_real_nvml_never_raises():
    """The real pynvml: on this machine and CI (no driver) a plain status; on a GPU box, GPUs."""
    reader = NvmlReader()
    status = reader.open()
    status_read, gpus, processes = reader.read()
    if status.available:  # a machine with a driver
        assert gpus and all(g.name for g in gpus)
    else:
        assert "NVML" in status.message and "not available" in status.message
        assert (status_read.available, gpus, processes) == (False, [], [])
    reader.close()


def test_missing_pynvml_package_is_a_status(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    status = NvmlReader().open()
    assert not status.available and "not installed" in status.message


def test_driver_not_loaded_is_a_status(monkeypatch):
    install_fake_nvml(monkeypatch, [FakeGpu()], init_error=real.NVML_ERROR_DRIVER_NOT_LOADED)
    reader = NvmlReader()
    assert "Driver Not Loaded" in reader.open().message
    assert reader.read()[1:] == ([], [])


def test_full_reading(monkeypatch):
    install_fake_nvml(monkeypatch, [FakeGpu(name=b"NVIDIA H100", compute=[(4242, 3 * 2**30)])])
    reader = NvmlReader()
    status = reader.open()
    assert status.available
    assert (status.driver_version, status.cuda_driver_version, status.nvml_version) == (
        "550.54.15", "12.4", "12.550.54.15")
    _, [gpu], [proc] = reader.read()
    assert gpu.name == "NVIDIA H100"  # bytes decoded
    assert (gpu.util_gpu, gpu.util_memory, gpu.memory_used, gpu.memory_total) == (
        37, 12, 10 * 2**30, 80 * 2**30)
    assert (gpu.temperature_c, gpu.power_w, gpu.power_limit_w) == (45, 123.456, 700.0)
    assert (gpu.sm_clock_mhz, gpu.memory_clock_mhz, gpu.fan_percent, gpu.pstate) == (
        1980, 2619, 30, 0)
    assert (proc.gpu_index, proc.pid, proc.kind, proc.gpu_memory) == (0, 4242, "compute", 3 * 2**30)


def test_unsupported_fields_are_none_and_show_na(monkeypatch):
    unsupported = {"nvmlDeviceGetFanSpeed", "nvmlDeviceGetPowerUsage",
                   "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit",
                   "nvmlDeviceGetTemperature", "nvmlDeviceGetClockInfo",
                   "nvmlDeviceGetPerformanceState", "nvmlDeviceGetUtilizationRates"}
    install_fake_nvml(monkeypatch, [FakeGpu(unsupported=unsupported), FakeGpu()])
    reader = NvmlReader()
    reader.open()
    _, (bare, full), _ = reader.read()
    assert (bare.fan_percent, bare.power_w, bare.power_limit_w, bare.temperature_c) == (None,) * 4
    assert (bare.sm_clock_mhz, bare.memory_clock_mhz, bare.pstate, bare.util_gpu) == (None,) * 4
    assert bare.memory_total == 80 * 2**30 and bare.name == "NVIDIA Fake 80GB"  # the rest reads
    assert full.fan_percent == 30 and full.power_w == pytest.approx(123.456)
    assert (fmt(bare.fan_percent, "%"), fmt_pstate(bare.pstate)) == (NA, NA)
    assert fmt_ratio(bare.power_w, bare.power_limit_w, "W") == NA
    assert fmt_ratio(bare.memory_used, None, "GiB", 1, 2**30) == "10.0 / N/A GiB"


def test_power_limit_falls_back_to_management_limit(monkeypatch):
    install_fake_nvml(monkeypatch, [FakeGpu(unsupported={"nvmlDeviceGetEnforcedPowerLimit"})])
    reader = NvmlReader()
    reader.open()
    assert reader.read()[1][0].power_limit_w == 700.0


def test_unknown_pstate_is_none(monkeypatch):
    install_fake_nvml(monkeypatch, [FakeGpu(pstate=real.NVML_PSTATE_UNKNOWN)])
    reader = NvmlReader()
    reader.open()
    assert reader.read()[1][0].pstate is None


def test_lost_gpu_is_reported_and_the_others_read(monkeypatch):
    install_fake_nvml(monkeypatch, [FakeGpu(lost=True), FakeGpu(compute=[(7, 1)])])
    reader = NvmlReader()
    reader.open()
    _, (lost, ok), processes = reader.read()
    assert lost.error and "lost" in lost.error.lower() and lost.util_gpu is None
    assert ok.error is None and ok.util_gpu == 37
    assert [(p.gpu_index, p.pid) for p in processes] == [(1, 7)]


def test_processes_merge_compute_and_graphics(monkeypatch):
    gpu = FakeGpu(compute=[(10, 100), (11, None)], graphics=[(10, 300), (12, 5)])
    install_fake_nvml(monkeypatch, [gpu])
    reader = NvmlReader()
    reader.open()
    procs = {p.pid: p for p in reader.read()[2]}
    assert (procs[10].kind, procs[10].gpu_memory) == ("compute+graphics", 300)
    assert (procs[11].kind, procs[11].gpu_memory) == ("compute", None)  # N/A memory (WDDM, MIG)
    assert procs[12].kind == "graphics"


def test_process_list_falls_back_to_v2(monkeypatch):
    fake = install_fake_nvml(monkeypatch, [FakeGpu(compute=[(10, 100)])])

    def missing(handle):
        raise real.NVMLError(real.NVML_ERROR_FUNCTION_NOT_FOUND)

    fake.nvmlDeviceGetComputeRunningProcesses = missing
    reader = NvmlReader()
    reader.open()
    assert [p.pid for p in reader.read()[2]] == [10]


def test_failed_open_is_retried(monkeypatch):
    fake = install_fake_nvml(monkeypatch, [FakeGpu()], init_error=real.NVML_ERROR_UNKNOWN)
    reader = NvmlReader(retry_s=3600)
    assert not reader.open().available
    good = install_fake_nvml(monkeypatch, [FakeGpu()])
    assert not reader.read()[0].available  # not before retry_s
    reader.retry_s = 0
    status, gpus, _ = reader.read()
    assert status.available and len(gpus) == 1 and good.calls["init"] == 1
    assert fake.calls["init"] == 0
    reader.close()
    assert good.calls["shutdown"] == 1

