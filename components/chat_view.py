"""Rendering a conversation: messages, per-reply stats and notices, export buttons."""

from __future__ import annotations

import streamlit as st

from backend import conversation
from backend.generation import summarize_stats


def render_stats(message: dict) -> None:
    """The caption under a reply: tokens, tokens/s, time to first token, and notices."""
    stats = message.get("stats")
    if stats:
        stopped = " · stopped" if message.get("stopped") else ""
        st.caption(summarize_stats(stats) + stopped)
    if message.get("notice"):
        st.info(message["notice"], icon="✂️")


def render_message(message: dict) -> None:
    """A message's text (or a note that it is empty) and the caption under it."""
    st.markdown(message.get("content") or "*(empty reply)*")
    render_stats(message)


def render_history(messages: list[dict]) -> None:
    for message in messages:
        with st.chat_message(message["role"]):
            render_message(message)


def render_export(messages: list[dict], meta: dict, key: str) -> None:
    """Download buttons for the conversation as JSON and as Markdown."""
    cols = st.columns(2)
    # Callables: the files are made when a button is clicked, not on every rerun.
    cols[0].download_button("Export JSON", lambda: conversation.to_json(messages, meta),
                            file_name="conversation.json", mime="application/json",
                            key=f"{key}_export_json", disabled=not messages, width="stretch",
                            on_click="ignore")
    cols[1].download_button("Export Markdown", lambda: conversation.to_markdown(messages),
                            file_name="conversation.md", mime="text/markdown",
                            key=f"{key}_export_md", disabled=not messages, width="stretch",
                            on_click="ignore")
