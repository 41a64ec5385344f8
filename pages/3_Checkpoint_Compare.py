"""Checkpoint Compare: the base model and LoRA checkpoints side by side, and scored on a
validation set (ROUGE-1/2/L, BLEU-4 on a 0-100 scale, validation loss)."""

from __future__ import annotations

import streamlit as st

from backend.compare.cache import ResultCache
from components.compare_eval import render_batch_evaluation
from components.compare_sampling import render_compare_sampling
from components.compare_setup import render_compare_setup, render_status
from components.compare_side import render_side_by_side
from components.compare_state import keep_inputs, restore_inputs

st.set_page_config(page_title="Checkpoint Compare · LLM Workbench", page_icon="⚖️",
                   layout="wide")
st.title("Checkpoint Compare")
st.caption("One copy of the base model serves every variant: adapters are switched, never the "
           "base reloaded. It is the app's shared model, so the Chat uses it too: adapters are "
           "on only while this page generates (the Chat always gets the plain base), and one "
           "generation runs at a time across the app.")
cache = ResultCache()
restore_inputs(cache)
setup = render_compare_setup()
sampling = render_compare_sampling()
side_tab, eval_tab = st.tabs(["Side by side", "Batch evaluation"])
with side_tab:
    render_side_by_side(setup, sampling)
with eval_tab:
    render_batch_evaluation(setup, sampling, cache)
render_status(setup)
keep_inputs()
