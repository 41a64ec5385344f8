"""CUDA_VISIBLE_DEVICES mapping, and marking this app's processes (real child processes)."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest
from conftest import wait_until
from gpu_fake_nvml import FakeGpu, install_fake_nvml

from backend.gpu import GpuSampler, register_app_pid, unregister_app_pid
from backend.gpu.visibility import cuda_index_map, visible_indices

UUIDS = ["GPU-aaaa1111-0000", "GPU-bbbb2222-0000", "GPU-bbbc3333-0000"]


@pytest.mark.parametrize(("value", "expected"), [
    (None, [0, 1, 2]),                        # unset: all, NVML order
    ("", []),                                 # set but empty: none
    ("2,0", [2, 0]),
    (" 1 , 2 ", [1, 2]),
    ("0,7,1", [0]),                           # stops at the first entry that names no device
    ("-1", []),
    ("1,1,0", [1, 0]),                        # a device named twice counts once
    ("GPU-bbbc3333-0000,0", [2, 0]),          # full UUID
    ("aaaa1111", [0]),                        # "GPU-" may be left out
    ("GPU-bbbb2", [1]),                       # a unique prefix is enough
    ("GPU-bbb,0", []),                        # an ambiguous prefix names nothing: stop
    ("MIG-GPU-bbbb2222-0000/1/0,0", [1, 0]),  # MIG instance -> its parent GPU
    ("MIG-unknown", []),
])
def test_visible_indices(value, expected):
    def mig_parent(uuid: str) -> int | None:
        return 1 if uuid.startswith("MIG-GPU-bbbb2222") else None

    assert visible_indices(value, UUIDS, mig_parent) == expected


def test_cuda_index_map_is_physical_to_cuda():
    assert cuda_index_map("2,0", UUIDS) == {2: 0, 0: 1}
    assert cuda_index_map("MIG-x", UUIDS) == {}  # no MIG resolver: nothing visible


GPUS = [FakeGpu(uuid=u) for u in ("GPU-aaaa1111-0000", "GPU-bbbb2222-0000", "GPU-cccc3333-0000")]


@pytest.fixture
def child():
    """A real child process of this test process, with its own CUDA_VISIBLE_DEVICES."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "GPU-aaaa1111,GPU-cccc3333"}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE, env=env)
    yield proc
    proc.stdin.close()
    proc.wait(timeout=10)


def test_sampler_maps_visible_devices_and_marks_app_processes(monkeypatch, child):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    outsider = os.getppid()  # a real process that is not ours (our parent)
    gpus = [FakeGpu(uuid=g.uuid) for g in GPUS]
    gpus[0].compute = [(os.getpid(), 2**30), (outsider, 2**20)]
    gpus[2].compute = [(child.pid, 2**29)]
    install_fake_nvml(monkeypatch, gpus)
    sampler = GpuSampler(interval_s=60)
    sampler.start()
    try:
        snap = sampler.latest()
        assert [g.cuda_index for g in snap.gpus] == [1, None, 0]
        procs = {(p.gpu_index, p.pid): p for p in snap.processes}
        me, other, kid = procs[0, os.getpid()], procs[0, outsider], procs[2, child.pid]
        assert me.is_app and me.cuda_index == 1 and me.name and me.user
        assert not other.is_app and other.cuda_index is None
        # the child sees GPU 2 second under its own CUDA_VISIBLE_DEVICES (this process: first)
        assert kid.is_app and kid.cuda_index == 1
        assert "sys.stdin.read()" in kid.cmdline
    finally:
        sampler.stop()


def test_registered_pid_counts_as_app(monkeypatch):
    outsider = os.getppid()
    install_fake_nvml(monkeypatch, [FakeGpu(compute=[(outsider, 1)])])
    sampler = GpuSampler(interval_s=60)
    sampler.start()
    try:
        assert not sampler.latest().processes[0].is_app
        register_app_pid(outsider)
        try:
            assert sampler.sample_once().processes[0].is_app
        finally:
            unregister_app_pid(outsider)
        assert not sampler.sample_once().processes[0].is_app
    finally:
        sampler.stop()


def test_a_pid_we_cannot_see_is_listed_without_details(monkeypatch):
    """NVML may report pids from another PID namespace: listed, details N/A, not ours."""
    ghost = next(pid for pid in range(4_194_303, 1, -1) if not psutil.pid_exists(pid))
    install_fake_nvml(monkeypatch, [FakeGpu(compute=[(ghost, 5)])])
    sampler = GpuSampler(interval_s=60)
    sampler.start()
    try:
        [proc] = sampler.latest().processes
        assert (proc.pid, proc.name, proc.user, proc.cmdline, proc.is_app) == (
            ghost, None, None, None, False)
    finally:
        sampler.stop()


def test_process_that_leaves_the_gpu_leaves_the_table(monkeypatch, child):
    gpus = [FakeGpu(compute=[(child.pid, 1)])]
    install_fake_nvml(monkeypatch, gpus)
    sampler = GpuSampler(interval_s=0.05)
    sampler.start()
    try:
        assert sampler.latest().processes[0].is_app
        gpus[0].compute = []
        wait_until(lambda: sampler.latest().processes == (), 5, 0.02, "the process list to empty")
    finally:
        sampler.stop()
