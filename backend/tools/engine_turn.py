"""A model turn backed by the engine, without a UI (tests and scripts; the page streams its own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.prompting import PromptTooLongError
from backend.sampling import SamplingSettings
from backend.tools.loop import ModelTurn, TurnReply
from backend.tools.prompting import ToolPrompt


def engine_turn(
    engine: Any, settings: SamplingSettings, prompt: ToolPrompt,
    should_stop: Callable[[], bool] | None = None,
) -> ModelTurn:
    """A ModelTurn that generates with `engine` (holding its generation slot for the turn)."""

    def turn(history: list[dict]) -> TurnReply:
        with engine.generation_slot():
            try:
                stream = engine.chat_stream(prompt.messages(history), settings,
                                            tools=prompt.template_tools())
            except PromptTooLongError as exc:
                return TurnReply("", failed=str(exc))
            try:
                for _ in stream:
                    if should_stop is not None and should_stop():
                        stream.stop()
            finally:
                stream.close()
        return TurnReply(stream.text, stopped=stream.stats.stop_reason == "stopped",
                         extra={"stats": stream.stats.to_dict()})

    return turn
