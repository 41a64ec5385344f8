"""Per-session kernels: isolation, the live-kernel limit, the idle/closed-session reaper."""

from __future__ import annotations

import os
import time

import pytest
from conftest import wait_until

from backend.interpreter import KernelLimitError, KernelPool


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone as a kernel
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.fixture
def pool(tmp_path):
    active = {"a": True, "b": True}
    made = KernelPool(root=tmp_path / "kernels", max_kernels=1, idle_timeout_s=3600,
                      closed_grace_s=0.0, is_active=lambda key: active.get(key, True))
    made.active = active
    yield made
    made.close()


def test_sessions_get_their_own_folder_and_the_limit_is_clear(pool):
    with pool.session("a") as kernel:
        assert kernel.execute("x = 'a'; import os; os.getcwd()").status == "ok"
    assert pool.workdir("a") != pool.workdir("b")
    with pytest.raises(KernelLimitError, match="All 1 Python kernels .* in use"):
        with pool.session("b"):
            pass
    assert pool.live_kernels() == 1
    with pool.session("a") as kernel:  # the limit does not hurt the session that has one
        assert kernel.execute("x").outputs[0].text == "'a'"


def test_closed_sessions_are_reaped_and_free_their_slot(pool):
    with pool.session("a") as kernel:
        pid = kernel.pid
    folder = pool.workdir("a").parent
    pool.active["a"] = False  # the browser tab was closed
    assert pool.reap() == ["a"]
    assert not folder.exists()
    wait_until(lambda: not pid_alive(pid), 10, 0.05, "the reaped kernel to exit")
    assert pool.reaped_notice("a") is None  # nobody is there to read one
    with pool.session("b") as kernel:  # the slot is free again
        assert kernel.execute("1").status == "ok"


def test_idle_sessions_are_reaped_with_a_notice_and_busy_ones_are_not(pool):
    pool.idle_timeout_s = 0.5
    with pool.session("a") as kernel:
        kernel.execute("y = 1")
        assert pool.reap(now=time.monotonic() + 60) == []  # running: never reaped
    assert pool.reap(now=time.monotonic() + 60) == ["a"]
    assert "shut down after" in pool.reaped_notice("a")
    assert pool.reaped_notice("a") is None  # said once
    with pool.session("a") as kernel:  # a fresh kernel on the next use
        assert "NameError" in kernel.execute("y").outputs[-1].text


def test_the_reaper_thread_runs_on_its_own(tmp_path):
    made = KernelPool(root=tmp_path / "k", idle_timeout_s=0.2)
    try:
        with made.session("s") as kernel:
            pid = kernel.pid
        made.start_reaper(interval_s=0.1)
        wait_until(lambda: made.live_kernels() == 0, 15, 0.05, "the reaper")
        wait_until(lambda: not pid_alive(pid), 10, 0.05, "the kernel process to exit")
    finally:
        made.close()
    assert not (tmp_path / "k").exists()


def test_interrupt_and_restart_through_the_pool(pool):
    with pool.session("a") as kernel:
        kernel.execute("z = 3")
    pool.restart("a")
    with pool.session("a") as kernel:
        assert "NameError" in kernel.execute("z").outputs[-1].text
    assert pool.interrupt("a") is True  # nothing runs: harmless
    assert pool.interrupt("nobody") is False
    with pool.session("a") as kernel:
        assert kernel.execute("z = 4; z").outputs[0].text == "4"
