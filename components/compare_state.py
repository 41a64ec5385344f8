"""The comparison page's inputs remembered on disk: a new session starts from the last
evaluation's inputs, so reopening the page shows its cached results at once."""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.compare.cache import ResultCache

# session-state key -> key in the remembered inputs
REMEMBERED = {
    "cmp_base": "base", "cmp_trust": "trust_remote_code", "cmp_extra": "extra_adapters",
    "cmp_variants": "variants", "cmp_greedy": "greedy", "cmp_temperature": "temperature",
    "cmp_top_p": "top_p", "cmp_top_k": "top_k", "cmp_repetition_penalty": "repetition_penalty",
    "cmp_max_new_tokens": "max_new_tokens", "cmp_seed": "seed", "cmp_eval_path": "data_path",
    "cmp_eval_max": "max_samples",
}
DEFAULTS = {
    "cmp_base": "default", "cmp_trust": False, "cmp_extra": "", "cmp_variants": None,
    "cmp_greedy": True, "cmp_temperature": 0.7, "cmp_top_p": 0.9, "cmp_top_k": 50,
    "cmp_repetition_penalty": 1.0, "cmp_max_new_tokens": 128, "cmp_seed": 42,
    "cmp_eval_path": "", "cmp_eval_max": 20,
}
# what a remembered value is converted to: its default's type (cmp_variants is checked apart)
_TYPES = {key: type(value) for key, value in DEFAULTS.items() if key != "cmp_variants"}


def restore_inputs(cache: ResultCache) -> None:
    """Give every input a value before its widget is drawn: this session's last value (widget
    state is dropped while another page is shown), else the last evaluation's, else a default."""
    state = st.session_state
    saved = state.setdefault("cmp_saved", {})
    last = None
    for key, default in DEFAULTS.items():
        if key in state:
            continue
        if key in saved:
            state[key] = saved[key]
            continue
        if last is None:
            last = cache.last() or {}
        state[key] = _checked(key, last.get(REMEMBERED[key], default), default)


def _checked(key: str, value: Any, default: Any) -> Any:
    if key == "cmp_variants":
        ok = value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        return value if ok else default
    kind = _TYPES[key]
    try:
        return kind(value)
    except (TypeError, ValueError):
        return default


def keep_inputs() -> None:
    """Copy the inputs aside (call after drawing the widgets)."""
    state = st.session_state
    state["cmp_saved"] = {k: state[k] for k in DEFAULTS if k in state}


def remember_inputs(cache: ResultCache) -> None:
    """Save the current inputs as the ones a new session starts from."""
    inputs = {REMEMBERED[k]: st.session_state.get(k) for k in REMEMBERED}
    try:
        cache.remember_last(inputs)
    except OSError:
        pass  # remembering is a convenience: a read-only cache folder must not break the page
