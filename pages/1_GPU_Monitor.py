"""GPU Monitor: live per-GPU and per-process metrics with history, and host CPU and RAM."""

from __future__ import annotations

import streamlit as st

from components.gpu_view import render_gpu_monitor

st.set_page_config(page_title="GPU Monitor · LLM Workbench", page_icon="📈", layout="wide")
st.title("GPU Monitor")
render_gpu_monitor()
