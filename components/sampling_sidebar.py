"""Sidebar section: sampling sliders, presets by use case, system prompt and seed."""

from __future__ import annotations

from dataclasses import asdict

import streamlit as st

from backend.sampling import PRESETS, SamplingSettings

# The sliders start at SamplingSettings' defaults; the seed box shows 42 (off until "Fixed seed").
_DEFAULTS = {**asdict(SamplingSettings()), "seed": 42, "fixed_seed": False, "system_prompt": "",
             "preset": "Chatbot replies"}


def _apply_preset() -> None:
    temperature, top_p = PRESETS[st.session_state["preset"]]
    st.session_state["temperature"] = temperature
    st.session_state["top_p"] = top_p


def render_sampling_sidebar() -> tuple[SamplingSettings, str]:
    """Draw the sampling controls; return the settings and the system prompt."""
    for key, value in _DEFAULTS.items():
        st.session_state.setdefault(key, value)
    side = st.sidebar
    side.selectbox("Preset", list(PRESETS), key="preset", on_change=_apply_preset,
                   help="Sets temperature and top_p together for a use case.")
    side.slider("Temperature", 0.0, 2.0, step=0.05, key="temperature",
                help="0 means greedy decoding (always the most likely token).")
    side.slider("top_p", 0.0, 1.0, step=0.05, key="top_p")
    side.slider("top_k", 0, 200, step=1, key="top_k", help="0 turns top-k off.")
    side.slider("Repetition penalty", 1.0, 2.0, step=0.05, key="repetition_penalty")
    side.slider("Max new tokens", 16, 4096, step=16, key="max_new_tokens")
    cols = side.columns([1, 1])
    cols[0].checkbox("Fixed seed", key="fixed_seed", help="Same seed, same settings: same reply.")
    cols[1].number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="seed",
                         disabled=not st.session_state["fixed_seed"], label_visibility="collapsed")
    side.text_area("System prompt", key="system_prompt", height=90,
                   placeholder="Optional: instructions for the model")
    settings = SamplingSettings(
        temperature=float(st.session_state["temperature"]),
        top_p=float(st.session_state["top_p"]),
        top_k=int(st.session_state["top_k"]),
        repetition_penalty=float(st.session_state["repetition_penalty"]),
        max_new_tokens=int(st.session_state["max_new_tokens"]),
        seed=int(st.session_state["seed"]) if st.session_state["fixed_seed"] else None,
    )
    return settings, st.session_state["system_prompt"]
