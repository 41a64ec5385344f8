"""The UI-side wrapper over the backend's model engine: one engine per process, shared by all."""

from __future__ import annotations

import os
from collections.abc import Callable

import streamlit as st

from backend import default_model
from backend.engine import ModelEngine
from backend.model_loader import LoadedModel, ModelLoadError, ModelSpec


@st.cache_resource(show_spinner=False)
def get_engine() -> ModelEngine:
    """The single ModelEngine of this app process (shared by every page and browser session)."""
    return ModelEngine()


def initial_spec() -> ModelSpec:
    """The model the app starts with: $MODEL_PATH, else the embedded default."""
    alias = default_model.DEFAULT_MODEL_ALIAS
    return ModelSpec(
        path=os.environ.get("MODEL_PATH", alias) or alias,
        trust_remote_code=os.environ.get("TRUST_REMOTE_CODE", "") in ("1", "true", "yes"),
    )


def progress_to(bar) -> Callable[[float, str], None]:
    """A load/progress callback drawing into the `st.progress` bar `bar` (fraction clamped)."""
    return lambda fraction, message: bar.progress(min(max(fraction, 0.0), 1.0), text=message)


def load_with_progress(spec: ModelSpec) -> LoadedModel | None:
    """Load `spec` into the shared engine, drawing a progress bar; show errors in the page."""
    engine = get_engine()
    bar = st.progress(0.0, text=f"Loading {spec.path}…")
    try:
        loaded = engine.load(spec, progress_to(bar))
    except ModelLoadError as exc:
        bar.empty()
        st.session_state["model_error"] = str(exc)
        return engine.loaded
    bar.empty()
    st.session_state.pop("model_error", None)
    return loaded


def ensure_model() -> LoadedModel | None:
    """The loaded model; on the first visit of a fresh process, load the starting model."""
    engine = get_engine()
    if engine.loaded is None and not st.session_state.get("autoload_failed"):
        # Marked only on a real failure: a load cut short by a rerun (a click) is tried again.
        if load_with_progress(initial_spec()) is None:
            st.session_state["autoload_failed"] = True
    return engine.loaded
