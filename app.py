"""LLM Workbench, main page: Chat, Tool and Code Interpreter modes over one shared model."""

from __future__ import annotations

import streamlit as st

from components.chat_mode import render_chat_mode
from components.interpreter_mode import render_interpreter_mode
from components.model_cache import get_engine
from components.model_sidebar import render_model_sidebar
from components.sampling_sidebar import render_sampling_sidebar
from components.tool_mode import render_tool_mode

MODES = ("Chat", "Tool", "Code Interpreter")

st.set_page_config(page_title="LLM Workbench", page_icon="🛠️", layout="wide")
st.title("LLM Workbench")

mode = st.sidebar.radio("Mode", MODES, key="mode", horizontal=True)
render_model_sidebar()
settings, system_prompt = render_sampling_sidebar()

model_ready = get_engine().loaded is not None
if not model_ready:
    st.warning("No model is loaded. Pick a model folder in the sidebar's Model section.")

if mode == "Chat":
    render_chat_mode(settings, system_prompt, model_ready)
elif mode == "Tool":
    render_tool_mode(settings, system_prompt, model_ready)
else:  # Code Interpreter
    render_interpreter_mode(settings, system_prompt, model_ready)
