"""AppTest of pages/1_GPU_Monitor.py: the CPU path CI takes (no NVML), and GPUs via a stand-in."""

from __future__ import annotations

import os
import re
from pathlib import Path

import psutil
import pytest
from gpu_fake_nvml import FakeGpu, install_fake_nvml
from streamlit.testing.v1 import AppTest

from components.gpu_view import get_sampler

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "1_GPU_Monitor.py")


@pytest.fixture(autouse=True)
def fresh_sampler():
    """Each test gets its own process-wide sampler (clearing the cache stops the old one)."""
    get_sampler.clear()
    yield
    get_sampler.clear()


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_no_gpu_shows_notice_and_host_metrics():
    at = run_page()
    assert at.title[0].value == "GPU Monitor"
    [notice] = at.warning
    assert "No GPU available" in notice.value and "NVML" in notice.value
    shown = metrics(at)
    assert {"CPU", "RAM", "This app: CPU", "This app: RAM"} <= set(shown)
    total_gib = psutil.virtual_memory().total / 2**30
    assert re.fullmatch(rf"\d+\.\d / {total_gib:.1f} GiB", shown["RAM"]), shown["RAM"]
    assert "Utilization" not in shown and len(at.dataframe) == 0  # no GPU panels, no table
    assert any("Host CPU and RAM" in m.value for m in at.markdown)
    assert len(at.get("vega_lite_chart")) == 1  # the host history chart only
    assert any(c.value.startswith("Last sample") for c in at.caption)


def test_host_cpu_appears_on_a_later_refresh():
    at = run_page()
    sampler = get_sampler()
    sampler.sample_once()  # what the background thread does every second
    at.run()
    assert re.fullmatch(r"\d+\.\d%", metrics(at)["CPU"]), metrics(at)["CPU"]


def test_refresh_and_window_controls():
    at = run_page()
    refresh = at.sidebar.selectbox(key="gpu_refresh")
    window = at.sidebar.selectbox(key="gpu_window")
    assert refresh.options == ["Off", "1 s", "2 s", "5 s", "10 s"] and refresh.value == "2 s"
    assert window.value == "15 min"
    refresh.set_value("Off")
    window.set_value("1 min")
    at.run()
    assert not at.exception and at.warning  # still renders, without live refresh


def test_gpus_with_unsupported_fields(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    gpus = [
        FakeGpu(name="NVIDIA A100", uuid="GPU-a", compute=[(os.getpid(), 3 * 2**30)],
                unsupported={"nvmlDeviceGetFanSpeed", "nvmlDeviceGetPowerUsage"}),
        FakeGpu(name="NVIDIA H100", uuid="GPU-b", compute=[(os.getppid(), 2**30)]),
    ]
    install_fake_nvml(monkeypatch, gpus)
    at = run_page()
    assert len(at.warning) == 0
    cards = [m.value for m in at.markdown if m.value.startswith("**GPU ")]
    assert cards == ["**GPU 0** · NVIDIA A100 · not visible to this app",
                     "**GPU 1** · NVIDIA H100 · `cuda:0` in this app"]
    fans = [m.value for m in at.metric if m.label == "Fan"]
    powers = [m.value for m in at.metric if m.label == "Power"]
    assert fans == ["N/A", "30%"] and powers == ["N/A / 700 W", "123 / 700 W"]
    assert [m.value for m in at.metric if m.label == "Utilization"] == ["37%", "37%"]
    assert any("driver 550.54.15" in c.value and "CUDA 12.4" in c.value for c in at.caption)
    table = at.dataframe[0].value
    mine = table[table["PID"] == os.getpid()].iloc[0]
    other = table[table["PID"] == os.getppid()].iloc[0]
    assert bool(mine["This app"]) and not bool(other["This app"])
    assert mine["GPU memory (MiB)"] == 3072 and table.iloc[0]["PID"] == os.getpid()  # ours first
    assert len(at.get("vega_lite_chart")) == 5  # 4 GPU history charts and the host chart
