"""The GPU Monitor page body: GPU cards, host metrics, history charts and the process table,
refreshed live by a fragment from the one shared background sampler."""

from __future__ import annotations

import os
import time

import streamlit as st

from backend.gpu.format import GIB, NA, fmt, fmt_bytes, fmt_pstate, fmt_ratio
from backend.gpu.frames import process_table
from backend.gpu.readings import GpuReading, HostReading, Snapshot
from backend.gpu.sampler import GpuSampler
from components.gpu_charts import render_gpu_charts, render_host_chart

REFRESH_CHOICES: dict[str, float | None] = {"Off": None, "1 s": 1, "2 s": 2, "5 s": 5, "10 s": 10}
WINDOW_CHOICES: dict[str, int] = {"1 min": 60, "5 min": 300, "15 min": 900}


@st.cache_resource(show_spinner=False, on_release=GpuSampler.stop)
def get_sampler() -> GpuSampler:
    """The app process's one GPU sampler (1 s, 15 min of history), started on first use."""
    sampler = GpuSampler()
    sampler.start()
    return sampler


def render_gpu_monitor() -> None:
    """Controls in the sidebar; the live part reruns on its own every refresh interval."""
    sampler = get_sampler()
    sampler.start()  # no-op while running; restarts a sampler someone stopped
    with st.sidebar:
        refresh = st.selectbox("Refresh every", list(REFRESH_CHOICES), index=2, key="gpu_refresh",
                               help=f"How often the page redraws. Sampling runs every "
                                    f"{sampler.interval_s:g} s in the background regardless.")
        window = st.selectbox("History window", list(WINDOW_CHOICES), index=2, key="gpu_window")

    @st.fragment(run_every=REFRESH_CHOICES[refresh])
    def live() -> None:
        render_live(sampler, WINDOW_CHOICES[window])

    live()


def render_live(sampler: GpuSampler, window_s: int) -> None:
    """Everything that changes between samples."""
    snap = sampler.latest()
    if snap is None:
        st.info("Collecting the first sample…")
        return
    render_status(snap, sampler)
    st.caption(f"Last sample {time.strftime('%H:%M:%S', time.localtime(snap.time))} "
               f"(#{snap.seq})")
    for gpu in snap.gpus:
        render_gpu_card(gpu)
    st.subheader("Host")
    render_host(snap.host)
    history = sampler.history(since=time.time() - window_s)
    st.subheader("History")
    if snap.gpus:
        render_gpu_charts(history)
    render_host_chart(history)
    if snap.status.available:
        render_processes(snap)


def render_status(snap: Snapshot, sampler: GpuSampler) -> None:
    status = snap.status
    if not status.available:
        reason = status.message if status.message.endswith(".") else f"{status.message}."
        st.warning(f"**No GPU available.** {reason} "
                   "GPU metrics need an NVIDIA GPU and driver; host CPU and RAM are shown below.",
                   icon="⚠️")
    elif not snap.gpus:
        st.info("NVML is available but reports no GPU. Host CPU and RAM are shown below.")
    else:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        st.caption(" · ".join([
            f"{len(snap.gpus)} GPU(s)",
            f"driver {status.driver_version or NA}",
            f"CUDA {status.cuda_driver_version or NA}",
            f"CUDA_VISIBLE_DEVICES={visible if visible is not None else '(unset: all)'}",
            f"sampled every {sampler.interval_s:g} s",
        ]))
    if sampler.last_error:
        st.error(f"The last sample failed: {sampler.last_error}")


def render_gpu_card(gpu: GpuReading) -> None:
    """One bordered card of metrics for one GPU."""
    with st.container(border=True):
        seen = (f"`cuda:{gpu.cuda_index}` in this app" if gpu.cuda_index is not None
                else "not visible to this app")
        st.markdown(f"**GPU {gpu.index}** · {gpu.name or NA} · {seen}")
        if gpu.error:
            st.error(gpu.error)
            return
        st.caption(f"{gpu.uuid or NA} · P-state {fmt_pstate(gpu.pstate)}")
        first = st.columns(4)
        first[0].metric("Utilization", fmt(gpu.util_gpu, "%"))
        first[1].metric("Memory", fmt_ratio(gpu.memory_used, gpu.memory_total, "GiB", 1, GIB),
                        help=f"free {fmt_bytes(gpu.memory_free)}")
        first[2].metric("Memory bandwidth use", fmt(gpu.util_memory, "%"))
        first[3].metric("Temperature", fmt(gpu.temperature_c, "°C"))
        second = st.columns(4)
        second[0].metric("Power", fmt_ratio(gpu.power_w, gpu.power_limit_w, "W"))
        second[1].metric("SM clock", fmt(gpu.sm_clock_mhz, "MHz"))
        second[2].metric("Memory clock", fmt(gpu.memory_clock_mhz, "MHz"))
        second[3].metric("Fan", fmt(gpu.fan_percent, "%"))


def render_host(host: HostReading) -> None:
    cols = st.columns(4)
    cols[0].metric("CPU", fmt(host.cpu_percent, "%", 1), help=f"{host.cpu_count or NA} cores")
    cols[1].metric("RAM", fmt_ratio(host.ram_used, host.ram_total, "GiB", 1, GIB),
                   help=f"{fmt(host.ram_percent, '%', 1)} used, "
                        f"{fmt_bytes(host.ram_available)} available")
    cols[2].metric("This app: CPU", fmt(host.app_cpu_percent, "%", 1),
                   help="This process, percent of one core.")
    cols[3].metric("This app: RAM", fmt_bytes(host.app_rss),
                   help="Resident memory of this process.")


def render_processes(snap: Snapshot) -> None:
    st.subheader("GPU processes")
    table = process_table(snap)
    if table.empty:
        st.caption("No process holds a GPU context.")
        return
    st.dataframe(
        table, hide_index=True, placeholder=NA,
        column_config={
            "This app": st.column_config.CheckboxColumn(
                help="This app's process, a child of it (training runs), or a registered pid."),
            "cuda": st.column_config.TextColumn(help="The GPU's index in that process's CUDA."),
            "PID": st.column_config.NumberColumn(format="%d"),
            "GPU memory (MiB)": st.column_config.NumberColumn(format="%.0f"),
        },
    )
