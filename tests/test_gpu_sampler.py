"""The background sampler and its ring buffer, on the real host (no GPU: NVML unavailable)."""

from __future__ import annotations

import threading
import time

import psutil
import pytest
from conftest import wait_until

from backend.gpu import DEFAULT_HISTORY, GpuSampler
from backend.gpu.nvml import NvmlReader
from backend.gpu.sampler import THREAD_NAME


@pytest.fixture
def sampler():
    s = GpuSampler(interval_s=0.02, history_len=5)
    yield s
    s.stop()


def test_defaults_are_15_minutes_at_1_s():
    s = GpuSampler()
    assert (s.interval_s, s.history_len, DEFAULT_HISTORY) == (1.0, 900, 900)
    assert not s.running and s.latest() is None and s.history() == []


@pytest.mark.parametrize("kwargs", [{"interval_s": 0}, {"history_len": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        GpuSampler(**kwargs)


def test_start_takes_a_sample_at_once(sampler):
    sampler.start()
    snap = sampler.latest()
    assert snap is not None and snap.seq == 0
    assert snap.host.ram_total == psutil.virtual_memory().total
    assert snap.host.app_rss and snap.host.app_rss > 0


def test_ring_buffer_is_bounded_and_ordered(sampler):
    sampler.start()
    wait_until(lambda: sampler.sample_count >= 12, 10, 0.01, "12 samples")
    history = sampler.history()
    assert len(history) == 5  # bounded at history_len
    seqs = [s.seq for s in history]
    assert seqs == list(range(seqs[0], seqs[0] + 5)) and seqs[0] >= 7  # the newest, in order
    times = [s.time for s in history]
    assert times == sorted(times)
    assert sampler.latest() is history[-1]


def test_host_cpu_is_measured_from_the_second_sample(sampler):
    sampler.start()
    wait_until(lambda: sampler.sample_count >= 3, 10, 0.01, "3 samples")
    first, *rest = sampler.history()[-3:]
    later = [s.host for s in rest]
    assert all(h.cpu_percent is not None and 0 <= h.cpu_percent <= 100 for h in later)
    assert all(h.app_cpu_percent is not None and h.app_cpu_percent >= 0 for h in later)
    assert all(h.cpu_count == psutil.cpu_count() for h in later)


def test_start_is_idempotent_and_stop_start_resumes(sampler):
    sampler.start()
    thread = sampler._thread
    sampler.start()
    assert sampler._thread is thread
    assert sum(t.name == THREAD_NAME and t.is_alive() for t in threading.enumerate()) >= 1
    wait_until(lambda: sampler.sample_count >= 3, 10, 0.01, "3 samples")
    sampler.stop()
    assert not sampler.running and not thread.is_alive()
    count = sampler.sample_count
    sampler.start()
    assert sampler.running and sampler._thread is not thread
    assert sampler.sample_count == count + 1  # start samples at once
    wait_until(lambda: sampler.sample_count >= count + 3, 10, 0.01, "more samples")
    seqs = [s.seq for s in sampler.history()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_history_since(sampler):
    sampler.start()
    wait_until(lambda: sampler.sample_count >= 4, 10, 0.01, "4 samples")
    history = sampler.history()
    cut = history[2].time
    assert sampler.history(since=cut)[0].time >= cut
    assert len(sampler.history(since=cut)) < len(sampler.history())
    assert sampler.history(since=time.time() + 60) == []


def test_interval_is_kept():
    s = GpuSampler(interval_s=0.1, history_len=100)
    s.start()
    try:
        wait_until(lambda: s.sample_count >= 11, 10, 0.01, "11 samples")
        times = [x.time for x in s.history()[1:11]]  # after the synchronous first sample
    finally:
        s.stop()
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert 0.08 < sum(gaps) / len(gaps) < 0.2, gaps


class FlakyReader(NvmlReader):
    """NVML that fails once mid-run, as a driver can (a stand-in: no GPU here)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def read(self):
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("driver hiccup")
        return super().read()


def test_a_failed_sample_does_not_stop_the_thread():
    reader = FlakyReader()
    s = GpuSampler(interval_s=0.02, history_len=50, nvml=reader)
    s.start()
    try:
        reader.fail_next = True
        wait_until(lambda: s.last_error is not None, 10, 0.005, "the failure to be recorded")
        assert "driver hiccup" in s.last_error
        count = s.sample_count
        wait_until(lambda: s.sample_count > count and s.last_error is None, 10, 0.01,
                   "sampling to go on")
        assert s.running
    finally:
        s.stop()
