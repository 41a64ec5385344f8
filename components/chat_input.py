"""The chat input of a mode: an empty message is refused, a real one joins the history."""

from __future__ import annotations

import streamlit as st


def take_user_message(history: list[dict], placeholder: str, key: str, pending_key: str,
                      disabled: bool, clear_key: str) -> bool:
    """Draw the chat input; a non-empty message goes into `history` and marks a reply pending.

    Returns True when the user submitted something (empty or not) in this run.
    """
    prompt = st.chat_input(placeholder, disabled=disabled, key=key)
    if prompt is None:
        return False
    if not prompt.strip():
        st.warning("The message is empty: type something first.")
        return True
    st.session_state.pop(clear_key, None)
    history.append({"role": "user", "content": prompt})
    with st.chat_message("user"):
        st.markdown(prompt)
    st.session_state[pending_key] = True
    return True
