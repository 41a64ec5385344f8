"""Sidebar section: which model is loaded, and a form to load another local folder."""

from __future__ import annotations

import streamlit as st

from backend.model_loader import QUANTIZATIONS, ModelSpec
from components.model_cache import ensure_model, get_engine, initial_spec, load_with_progress


def render_model_sidebar() -> None:
    """Model status plus path / trust_remote_code / quantization fields and a Load button."""
    start = initial_spec()
    with st.sidebar.expander("Model", expanded=get_engine().loaded is None):
        path = st.text_input(
            "Local model folder", value=start.path, key="model_path",
            help="A Hugging Face model folder (config.json + weights), a LoRA adapter folder, "
                 "or `default` for the embedded SmolLM2-135M-Instruct.",
        )
        trust = st.checkbox(
            "Trust remote code", value=start.trust_remote_code, key="trust_remote_code",
            help="Needed by models that ship their own code (ChatGLM3, GLM-4 chat).",
        )
        quant = st.selectbox("Quantization", QUANTIZATIONS, key="quantization",
                             help="4/8-bit loading needs bitsandbytes and a CUDA GPU.")
        load_clicked = st.button("Load model", key="load_model", width="stretch")
    if load_clicked:
        if not path.strip():
            st.session_state["model_error"] = "Enter a model folder (or `default`)."
        else:
            with st.sidebar:
                load_with_progress(ModelSpec(path=path.strip(), trust_remote_code=trust,
                                             quantization=quant))
    loaded = ensure_model()
    error = st.session_state.get("model_error")
    if error:
        st.sidebar.error(error)
    if loaded is not None:
        dtype = str(loaded.dtype).removeprefix("torch.")
        caption = (f"**{loaded.name}** · {loaded.device} · {dtype}"
                   f" · context {loaded.context_length:,}")
        st.sidebar.caption(caption)
        st.sidebar.caption(f"Fast CUDA decode path: {loaded.fast_path}")
        for note in loaded.notes:
            st.sidebar.caption(f"ℹ️ {note}")
