"""Streaming one model reply into the page: queueing, throttled redraws, Stop, partial replies."""

from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st

from backend.generation import ChatStream
from backend.prompting import PromptTooLongError
from backend.sampling import SamplingSettings
from components.model_cache import get_engine

REDRAW_INTERVAL_S = 0.05  # a streamed text is redrawn at most this often
CURSOR = "▌"


class StreamRedraw:
    """Draws a growing text with a cursor into a placeholder, at most every REDRAW_INTERVAL_S."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, body, text: str) -> None:
        now = time.perf_counter()
        if now - self.last >= REDRAW_INTERVAL_S:
            body.markdown(text + CURSOR)
            self.last = now


def draw_stream(stream: ChatStream, body) -> None:
    """Consume `stream`, redrawing its text so far into `body` now and then."""
    redraw = StreamRedraw()
    for _ in stream:
        redraw(body, stream.text)


def wait_notice(slot, wording: str) -> Callable[[float], None]:
    """An on_wait callback: "`wording`… N s" in `slot` while the model is busy elsewhere."""

    def waiting(seconds: float) -> None:
        slot.info(f"{wording}… {seconds:.0f} s", icon="⏳")

    return waiting


def _notice(dropped: int, context_length: int) -> str | None:
    if not dropped:
        return None
    return (f"The {dropped} oldest message(s) were left out of the prompt to fit the model's "
            f"context of {context_length:,} tokens.")


def stream_reply(
    messages: list[dict], settings: SamplingSettings, history: list[dict], stop_key: str,
    tools: list[dict] | None = None,
) -> bool:
    """Generate the model's reply to `messages` inside an assistant chat message.

    The assistant entry is appended to `history`, also when Stop interrupted it (the partial
    text is kept: a click on Stop reruns the script, and the `finally` below still records the
    reply before the rerun). Returns False when the prompt could not be sent (the error shows).
    `tools` (OpenAI-style schemas) go to the chat template, for templates that take them.
    """
    engine = get_engine()
    entry: dict = {"role": "assistant", "content": ""}
    stream: ChatStream | None = None
    with st.chat_message("assistant"):
        status = st.empty()
        body = st.empty()
        st.button("Stop", icon=":material/stop_circle:", key=stop_key,
                  help="Stop generating; the partial reply is kept.")
        waiting = wait_notice(status, "Waiting for another session's generation to finish")
        try:
            with engine.generation_slot(on_wait=waiting):
                status.empty()
                try:
                    stream = engine.chat_stream(messages, settings, tools=tools)
                except PromptTooLongError as exc:
                    status.error(str(exc))
                    return False
                draw_stream(stream, body)
                body.markdown(stream.text or "*(empty reply)*")
        finally:
            if stream is not None:
                stream.close()
                entry["content"] = stream.text
                entry["stats"] = stream.stats.to_dict()
                entry["stopped"] = stream.stats.stop_reason == "stopped"
                loaded = engine.loaded  # read now: another session may switch it while we wait
                notice = _notice(stream.dropped_messages, loaded.context_length if loaded else 0)
                if notice:
                    entry["notice"] = notice
                history.append(entry)
    return stream is not None
