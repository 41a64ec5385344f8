"""The chat input of a mode: an empty message is refused, a real one joins the history."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import streamlit as st


def _user_entry(prompt: str) -> dict:
    return {"role": "user", "content": prompt}


def _draw_user(entry: dict) -> None:
    with st.chat_message("user"):
        st.markdown(entry["content"])


def take_user_message(history: list[dict], placeholder: str, key: str, pending_key: str,
                      disabled: bool, clear_key: str | None = None,
                      make_entry: Callable[[str], dict] = _user_entry,
                      render: Callable[[dict], None] = _draw_user, container=None) -> bool:
    """Draw the chat input; a non-empty message goes into `history` and marks a reply pending.

    `clear_key` is dropped from the session state when a message is taken; `make_entry` turns
    the text into the history entry, which `render` draws (inside `container` if given).
    Returns True when the user submitted something (empty or not) in this run.
    """
    prompt = st.chat_input(placeholder, disabled=disabled, key=key)
    if prompt is None:
        return False
    if not prompt.strip():
        st.warning("The message is empty: type something first.")
        return True
    if clear_key is not None:
        st.session_state.pop(clear_key, None)
    entry = make_entry(prompt)
    history.append(entry)
    with container if container is not None else contextlib.nullcontext():
        render(entry)
    st.session_state[pending_key] = True
    return True
