"""History charts of the GPU monitor: per-GPU utilization, memory, power, temperature; host."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd
import streamlit as st

from backend.gpu.frames import GPU_METRICS, gpu_history, host_history
from backend.gpu.readings import Snapshot

CHART_HEIGHT = 200


def line_chart(frame: pd.DataFrame, unit: str) -> alt.Chart:
    """One line per column of `frame` (index: time), clock-time axis, gaps where values are NaN."""
    long = frame.reset_index().melt("time", var_name="series", value_name="value")
    return alt.Chart(long).mark_line(interpolate="linear").encode(
        x=alt.X("time:T", title=None, axis=alt.Axis(format="%H:%M:%S", labelOverlap=True)),
        y=alt.Y("value:Q", title=unit,
                scale=alt.Scale(domain=[0, 100]) if unit == "%" else alt.Scale(zero=True)),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "series:N",
                 alt.Tooltip("value:Q", format=".1f")],
    ).properties(height=CHART_HEIGHT)


def render_gpu_charts(snaps: Sequence[Snapshot]) -> None:
    """A 2x2 grid: one line per GPU in each chart."""
    names = list(GPU_METRICS)
    for row in range(0, len(names), 2):
        for col, metric in zip(st.columns(2), names[row:row + 2], strict=False):
            unit = GPU_METRICS[metric][0]
            with col:
                st.markdown(f"**{metric}** ({unit})")
                st.altair_chart(line_chart(gpu_history(snaps, metric), unit))


def render_host_chart(snaps: Sequence[Snapshot]) -> None:
    st.markdown("**Host CPU and RAM** (%)")
    st.altair_chart(line_chart(host_history(snaps), "%"))
