"""Chat mode of the main page: history, chat input, Retry / Clear / Export, streamed replies."""

from __future__ import annotations

import streamlit as st

from backend.sampling import SamplingSettings
from components.chat_input import take_user_message
from components.chat_view import render_export, render_history
from components.reply_stream import stream_reply

MODE = "chat"


def _history() -> list[dict]:
    return st.session_state.setdefault("histories", {}).setdefault(MODE, [])


def _retry() -> None:
    history = _history()
    if history and history[-1]["role"] == "assistant":
        history.pop()
    if history and history[-1]["role"] == "user":
        st.session_state["chat_pending"] = True


def _clear() -> None:
    _history().clear()
    st.session_state.pop("chat_rejected", None)


def _prompt_messages(history: list[dict], system_prompt: str) -> list[dict]:
    system = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    return system + [{"role": m["role"], "content": m["content"]} for m in history]


def render_chat_mode(settings: SamplingSettings, system_prompt: str, model_ready: bool) -> None:
    history = _history()
    cols = st.columns([1, 1, 2])
    cols[0].button("Retry", icon=":material/refresh:", on_click=_retry, key="chat_retry",
                   width="stretch", disabled=not history or not model_ready)
    cols[1].button("Clear", icon=":material/delete:", on_click=_clear, key="chat_clear",
                   width="stretch", disabled=not history)
    with cols[2]:
        render_export(history, {"mode": MODE, "system_prompt": system_prompt,
                                "settings": settings.to_dict()}, key=MODE)
    render_history(history)

    take_user_message(history, "Message the model", key="chat_input", pending_key="chat_pending",
                      disabled=not model_ready, clear_key="chat_rejected")

    if st.session_state.pop("chat_pending", False) and model_ready:
        sent = stream_reply(_prompt_messages(history, system_prompt), settings, history,
                            stop_key="chat_stop")
        if not sent and history and history[-1]["role"] == "user":
            st.session_state["chat_rejected"] = history.pop()["content"]
        st.rerun()

    rejected = st.session_state.get("chat_rejected")
    if rejected is not None:
        st.warning(f"Your last message ({len(rejected):,} characters) was not sent: it does not "
                   "fit the model's context. Its text is kept below so you can shorten it.")
        with st.expander("Message that was not sent"):
            st.code(rejected[:20000] + ("\n…" if len(rejected) > 20000 else ""), language=None)
