"""Rendering Tool mode's history: replies, and each tool call with its result in an expander."""

from __future__ import annotations

import json

import streamlit as st

from components.chat_view import render_message

DISPLAY_CHARS = 200_000  # past this the page shows the start and offers the whole as a download
TOOL_AVATAR = ":material/build:"
_STATUS = {
    "ok": "done", "manual": "result typed by you", "error": "raised an error",
    "malformed": "call could not be read", "unknown_tool": "unknown tool",
    "bad_arguments": "bad arguments", "timeout": "timed out", "stopped": "stopped",
    "declined": "declined by you",
}


def call_label(name: str, result: dict) -> str:
    status = _STATUS.get(result.get("status", ""), result.get("status", ""))
    return f"{name or '?'} · {status} · {result.get('elapsed_s', 0.0):.2f} s"


def render_tool_result(entry: dict, key: str) -> None:
    """One call and its observation: name, arguments, result (whole), time taken."""
    result = entry["tool_result"]
    name = result.get("name") or entry.get("name") or "?"
    with st.expander(call_label(name, result), expanded=False, icon=TOOL_AVATAR):
        st.markdown(f"**Tool:** `{name}`")
        st.markdown("**Arguments**")
        st.code(json.dumps(result.get("arguments", {}), ensure_ascii=False, indent=2),
                language="json")
        output = result.get("output", "")
        st.markdown("**Result**")
        st.code(output[:DISPLAY_CHARS] or "(empty)", language=None, wrap_lines=True)
        if len(output) > DISPLAY_CHARS:
            st.caption(f"The page shows the first {DISPLAY_CHARS:,} of {len(output):,} characters;"
                       " the download has all of it.")
            st.download_button("Download the whole result", output, file_name=f"{name}.txt",
                               key=f"tool_download_{key}")
        notes = [f"time taken {result.get('elapsed_s', 0.0):.3f} s",
                 f"status: {result.get('status', '')}"]
        if result.get("truncated"):
            notes.append(f"the model was given the first part only ({len(output):,} characters "
                         "in all)")
        st.caption(" · ".join(notes))


def render_tool_history(history: list[dict]) -> None:
    for index, entry in enumerate(history):
        if "tool_result" in entry:
            with st.chat_message("tool", avatar=TOOL_AVATAR):
                render_tool_result(entry, str(index))
            continue
        with st.chat_message(entry["role"]):
            render_message(entry)
            not_run = entry.get("calls_not_run")
            if not_run:
                names = ", ".join(c.get("name") or "?" for c in not_run)
                st.caption(f"Tool call(s) not run (round limit reached): {names}")
