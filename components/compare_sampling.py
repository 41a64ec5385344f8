"""Sidebar section: the sampling settings every variant gets, with a greedy switch."""

from __future__ import annotations

import streamlit as st

from backend.sampling import SamplingSettings


def render_compare_sampling() -> SamplingSettings:
    """Draw the controls; return the settings (temperature 0 when greedy; always seeded)."""
    side = st.sidebar
    side.subheader("Sampling, the same for every variant")
    greedy = side.toggle("Greedy (exact comparison)", key="cmp_greedy",
                         help="Always pick the most likely token: same input, same answer.")
    side.slider("Temperature", 0.05, 2.0, step=0.05, key="cmp_temperature", disabled=greedy)
    side.slider("top_p", 0.05, 1.0, step=0.05, key="cmp_top_p", disabled=greedy)
    side.slider("top_k", 0, 200, step=1, key="cmp_top_k", disabled=greedy,
                help="0 turns top-k off.")
    side.slider("Repetition penalty", 1.0, 2.0, step=0.05, key="cmp_repetition_penalty")
    side.slider("Max new tokens", 8, 2048, step=8, key="cmp_max_new_tokens")
    side.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="cmp_seed",
                      disabled=greedy, help="Every variant samples with this seed.")
    state = st.session_state
    return SamplingSettings(
        temperature=0.0 if greedy else float(state["cmp_temperature"]),
        top_p=float(state["cmp_top_p"]), top_k=int(state["cmp_top_k"]),
        repetition_penalty=float(state["cmp_repetition_penalty"]),
        max_new_tokens=int(state["cmp_max_new_tokens"]), seed=int(state["cmp_seed"]),
    )


def describe(settings: SamplingSettings) -> str:
    """One line for captions."""
    if settings.greedy:
        how = "greedy"
    else:
        how = (f"temperature {settings.temperature:g}, top_p {settings.top_p:g}, "
               f"top_k {settings.top_k}, seed {settings.seed}")
    penalty = f", repetition penalty {settings.repetition_penalty:g}" \
        if settings.repetition_penalty != 1.0 else ""
    return f"{how}{penalty}, at most {settings.max_new_tokens} new tokens"
