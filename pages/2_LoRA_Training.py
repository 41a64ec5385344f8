"""LoRA Training: launch, watch, stop, resume and delete training runs (subprocesses)."""

from __future__ import annotations

import streamlit as st

from backend.training.registry import runs_root
from components.training_form import render_new_run
from components.training_runs import render_runs

st.set_page_config(page_title="LoRA Training · LLM Workbench", page_icon="🧪", layout="wide")
st.title("LoRA Training")
st.caption("Runs are separate processes writing to disk: they keep training when this tab is "
           "closed, and the list below survives reloads and app restarts.")
root = runs_root()
render_new_run(root)
st.divider()
render_runs(root)
