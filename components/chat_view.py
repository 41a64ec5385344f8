"""Rendering a conversation: messages, per-reply stats and notices, export buttons."""

from __future__ import annotations

import streamlit as st

from backend import conversation


def render_stats(message: dict) -> None:
    """The caption under a reply: tokens, tokens/s, time to first token, and notices."""
    stats = message.get("stats")
    if stats:
        ttft = f"{stats['ttft_s']:.2f} s" if stats.get("ttft_s") is not None else "n/a"
        stopped = " · stopped" if message.get("stopped") else ""
        st.caption(f"{stats['new_tokens']} tokens · {stats['tokens_per_s']:.1f} tokens/s · "
                   f"first token {ttft}{stopped}")
    if message.get("notice"):
        st.info(message["notice"], icon="✂️")


def render_history(messages: list[dict]) -> None:
    for message in messages:
        with st.chat_message(message["role"]):
            st.markdown(message["content"] or "*(empty reply)*")
            render_stats(message)


def render_export(messages: list[dict], meta: dict, key: str) -> None:
    """Download buttons for the conversation as JSON and as Markdown."""
    cols = st.columns(2)
    cols[0].download_button("Export JSON", conversation.to_json(messages, meta),
                            file_name="conversation.json", mime="application/json",
                            key=f"{key}_export_json", disabled=not messages, width="stretch")
    cols[1].download_button("Export Markdown", conversation.to_markdown(messages),
                            file_name="conversation.md", mime="text/markdown",
                            key=f"{key}_export_md", disabled=not messages, width="stretch")
