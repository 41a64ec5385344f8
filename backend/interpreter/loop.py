"""The Code Interpreter loop: the model writes, its code runs, the result goes back, it goes on.

The model is any callable that takes the prompt messages and yields text deltas, so a scripted
stand-in can drive the loop in tests and the real engine drives it in the app (`engine_turn`).
The loop appends to the history as it goes and yields a `Step` after each change, for the page
to draw; closing it early (the page's Stop) keeps the partial reply and interrupts a running cell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from backend.interpreter.kernel import DEFAULT_TIMEOUT_S, ExecutionResult, Progress
from backend.interpreter.protocol import (
    OBSERVATION_CHARS,
    extract_code,
    format_observation,
    prompt_messages,
)
from backend.sampling import SamplingSettings

ModelTurn = Callable[[list[dict]], Iterable[str]]
DEFAULT_MAX_ROUNDS = 5


class Kernel(Protocol):
    def execute(self, code: str, timeout: float = ..., on_progress: Progress | None = ...,
                ) -> ExecutionResult: ...


@dataclass
class LoopSettings:
    """At most `max_rounds` model turns; each cell gets `timeout_s`; observations are cut to
    `observation_chars`; `observation_role` is the role results are sent under."""

    max_rounds: int = DEFAULT_MAX_ROUNDS
    timeout_s: float = DEFAULT_TIMEOUT_S
    observation_chars: int = OBSERVATION_CHARS
    observation_role: str = "observation"


@dataclass
class Step:
    """What changed: "delta" (reply text grew), "reply" (reply done), "run" (its code started),
    "result" (the code's observation is in). `entry` is the history entry concerned."""

    kind: str
    entry: dict


def observation_entry(result: ExecutionResult, limit: int = OBSERVATION_CHARS) -> dict:
    """The fields a history entry keeps of one run."""
    return {"status": result.status, "outputs": result.outputs,
            "content": format_observation(result, limit)}


def run_rounds(
    model_turn: ModelTurn, kernel: Kernel, history: list[dict], system: str,
    settings: LoopSettings | None = None, on_progress: Progress | None = None,
) -> Iterator[Step]:
    """Run model turns and their code until a reply has no code, or `max_rounds` turns.

    History entries: assistant `{"content", "code"}` and observation `{"content", "status",
    "outputs"}`; the last observation gets a `notice` when the round limit ended the loop.
    """
    settings = settings or LoopSettings()
    for round_no in range(1, settings.max_rounds + 1):
        messages = prompt_messages(history, system, settings.observation_role)
        reply: dict = {"role": "assistant", "content": "", "code": None}
        history.append(reply)
        yield from _model_reply(model_turn, messages, reply, history)
        if reply["code"] is None:
            return
        observation: dict = {"role": "observation", "content": "", "status": "running",
                             "outputs": []}
        history.append(observation)
        yield Step("run", observation)
        try:
            result = kernel.execute(reply["code"], timeout=settings.timeout_s,
                                    on_progress=on_progress)
        except BaseException:
            observation.update(status="stopped", content="```result\n(stopped by the user)\n```")
            raise
        observation.update(observation_entry(result, settings.observation_chars))
        if round_no == settings.max_rounds:
            observation["notice"] = (f"Stopped after {settings.max_rounds} rounds (the limit "
                                     "in the sidebar): send a message to let the model go on.")
        yield Step("result", observation)


def _model_reply(
    model_turn: ModelTurn, messages: list[dict], reply: dict, history: list[dict],
) -> Iterator[Step]:
    """Stream one model turn into `reply`; end it as soon as a complete code block is written."""
    deltas = iter(model_turn(messages))
    try:
        for delta in deltas:
            reply["content"] += delta
            # A block is complete when its closing ``` or </tool_call> arrives: only a piece
            # holding a ` or a > can complete one, so only then is the whole reply searched.
            block = extract_code(reply["content"]) if "`" in delta or ">" in delta else None
            if block is not None:
                reply["content"] = reply["content"][:block.end]
                reply["code"] = block.code
                break
            yield Step("delta", reply)
    except BaseException:
        reply["stopped"] = True
        if not reply["content"]:
            history.remove(reply)
        raise
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()
        stats = getattr(model_turn, "last_stats", None)
        if stats:
            reply["stats"] = stats
    yield Step("reply", reply)


class EngineTurn:
    """A ModelTurn backed by the shared ModelEngine: waits for the generation slot, streams.

    `last_stats` holds the GenerationStats dict of the latest turn.
    """

    def __init__(self, engine: Any, settings: SamplingSettings,
                 on_wait: Callable[[float], None] | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.on_wait = on_wait
        self.last_stats: dict | None = None

    def __call__(self, messages: list[dict]) -> Iterator[str]:
        self.last_stats = None
        with self.engine.generation_slot(on_wait=self.on_wait):
            stream = self.engine.chat_stream(messages, self.settings)
            try:
                yield from stream
            finally:
                stream.close()
                self.last_stats = stream.stats.to_dict()
