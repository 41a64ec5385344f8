"""The tool loop: model reply → calls parsed → checked → run → observation → the model goes on.

The loop drives a *model turn*: any callable that takes the history and returns the reply text
(or a `TurnReply`). The app passes one that streams from the engine into the page; tests pass the
engine directly, or a scripted stand-in that pins the orchestration.

State lives in the history list, which the loop appends to as it goes (so what happened before a
Stop is kept):

- assistant entries: ``{"role": "assistant", "content": text, "calls": [call dicts]}``
  (``calls`` only when the reply asked for tools; ``calls_not_run`` when the round limit was hit);
- observation entries: ``{"role": <observation role>, "name": tool, "content": observation,
  "tool_result": ToolResult.to_dict()}``.

Calls of the last reply that have no observation yet are *pending*: the loop runs them first when
it is called again. That is how it resumes after pausing for the user (manual mode: a tool with
no Python function; the shell tool: every call needs consent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from backend.tools.dispatch import (
    MAX_OBSERVATION_CHARS,
    STOPPED,
    ToolResult,
    declined_result,
    manual_result,
    precheck,
    run_tool,
    stopped_result,
)
from backend.tools.parsing import ToolCall, parse_tool_calls
from backend.tools.registry import ToolRegistry

DEFAULT_MAX_ROUNDS = 5

# LoopOutcome.status values
ANSWERED, MAX_ROUNDS, STOPPED_BY_USER, FAILED = "answered", "max_rounds", "stopped", "failed"
NEEDS_OBSERVATION, NEEDS_CONFIRMATION = "needs_observation", "needs_confirmation"


@dataclass
class TurnReply:
    """One model reply. `extra` (stats, notices) is stored on the history entry."""

    text: str
    stopped: bool = False
    failed: str | None = None  # why the prompt could not be sent
    extra: dict = field(default_factory=dict)


ModelTurn = Callable[[list[dict]], "TurnReply | str"]


@dataclass
class PendingCall:
    """A call of the last reply that has no observation yet. `key` names it for the page."""

    call: ToolCall
    key: str


@dataclass
class LoopOutcome:
    """How the loop ended, and for a pause, what it waits for."""

    status: str
    rounds: int
    message: str = ""
    pending: list[PendingCall] = field(default_factory=list)

    @property
    def paused(self) -> bool:
        return self.status in (NEEDS_OBSERVATION, NEEDS_CONFIRMATION)


@dataclass
class LoopHooks:
    """Optional callbacks; the defaults never pause and never stop.

    - should_stop(): True ends the loop (checked before each turn and while a tool runs);
    - on_wait(call, seconds): while a tool runs, about every 0.1 s;
    - on_observation(entry): after an observation is added;
    - observe(call, key): the user's text for a tool without a Python function, None to pause;
    - confirm(call, key): True to run a tool that needs consent, False to decline, None to pause.
    """

    should_stop: Callable[[], bool] | None = None
    on_wait: Callable[[ToolCall, float], None] | None = None
    on_observation: Callable[[dict], None] | None = None
    observe: Callable[[ToolCall, str], str | None] | None = None
    confirm: Callable[[ToolCall, str], bool | None] | None = None


def is_user_turn(entry: dict) -> bool:
    return entry.get("role") == "user" and "tool_result" not in entry


def _since_user(history: list[dict]) -> int:
    """Index of the first entry after the newest user message."""
    for index in range(len(history) - 1, -1, -1):
        if is_user_turn(history[index]):
            return index + 1
    return 0


def rounds_used(history: list[dict]) -> int:
    """Tool rounds since the newest user message (assistant replies that asked for tools)."""
    return sum(1 for e in history[_since_user(history):] if e.get("role") == "assistant"
               and e.get("calls"))


def pending_calls(history: list[dict]) -> list[PendingCall]:
    """The calls of the newest reply (after the newest user message) still without observation."""
    start = _since_user(history)
    for index in range(len(history) - 1, start - 1, -1):
        entry = history[index]
        if entry.get("role") == "assistant":
            calls = entry.get("calls") or []
            answered = sum(1 for e in history[index + 1:] if "tool_result" in e)
            return [PendingCall(ToolCall(**c), f"{index}:{i}")
                    for i, c in enumerate(calls) if i >= answered]
    return []


def observation_entry(result: ToolResult, role: str) -> dict:
    return {"role": role, "name": result.name, "content": result.observation,
            "tool_result": result.to_dict()}


def close_interrupted(history: list[dict], role: str) -> int:
    """Record 'stopped' observations for pending calls (after a Stop cut the loop short)."""
    pending = pending_calls(history)
    for item in pending:
        history.append(observation_entry(stopped_result(item.call), role))
    return len(pending)


def _normal(reply: TurnReply | str) -> TurnReply:
    return reply if isinstance(reply, TurnReply) else TurnReply(str(reply))


@dataclass
class ToolLoop:
    """The orchestration, with its settings; `run(history)` goes until an answer or a pause."""

    model_turn: ModelTurn
    registry: ToolRegistry
    observation_role: str = "tool"
    max_rounds: int = DEFAULT_MAX_ROUNDS
    timeout_s: float | None = None
    max_observation_chars: int = MAX_OBSERVATION_CHARS
    hooks: LoopHooks = field(default_factory=LoopHooks)

    def _stop_requested(self) -> bool:
        return bool(self.hooks.should_stop and self.hooks.should_stop())

    def _waiter(self, call: ToolCall) -> Callable[[float], None] | None:
        on_wait = self.hooks.on_wait
        if on_wait is None:
            return None
        return lambda seconds: on_wait(call, seconds)

    def _run_pending(self, history: list[dict], rounds: int) -> LoopOutcome | None:
        """Run the pending calls in order; an outcome when the loop must pause or stop."""
        for item in pending_calls(history):
            call = item.call
            if self._stop_requested():
                close_interrupted(history, self.observation_role)
                return LoopOutcome(STOPPED_BY_USER, rounds, "Stopped.")
            result = precheck(call, self.registry, self.max_observation_chars)
            tool = self.registry.get(call.name)
            if result is None and tool is not None and tool.function is None:
                text = self.hooks.observe(call, item.key) if self.hooks.observe else None
                if text is None:
                    return LoopOutcome(NEEDS_OBSERVATION, rounds,
                                       f"{call.name} has no Python function: type its result.",
                                       pending_calls(history))
                result = manual_result(call, text, self.max_observation_chars)
            elif result is None and tool is not None and tool.needs_confirmation:
                decision = self.hooks.confirm(call, item.key) if self.hooks.confirm else False
                if decision is None:
                    return LoopOutcome(NEEDS_CONFIRMATION, rounds,
                                       f"{call.name} needs your confirmation to run.",
                                       pending_calls(history))
                if not decision:
                    result = declined_result(call)
            if result is None and tool is not None:
                result = run_tool(tool, call, self.timeout_s or None, self.max_observation_chars,
                                  self.hooks.should_stop, self._waiter(call))
            assert result is not None
            entry = observation_entry(result, self.observation_role)
            history.append(entry)
            if self.hooks.on_observation:
                self.hooks.on_observation(entry)
            if result.status == STOPPED:
                close_interrupted(history, self.observation_role)
                return LoopOutcome(STOPPED_BY_USER, rounds, "Stopped while a tool was running.")
        return None

    def run(self, history: list[dict]) -> LoopOutcome:
        """Go on from the end of `history` (a new user message, or a resumed pause)."""
        rounds = rounds_used(history)
        paused = self._run_pending(history, rounds)
        if paused is not None:
            return paused
        if not history or (history[-1].get("role") == "assistant"):
            return LoopOutcome(ANSWERED, rounds, "Nothing to answer.")
        while True:
            if self._stop_requested():
                return LoopOutcome(STOPPED_BY_USER, rounds, "Stopped.")
            reply = _normal(self.model_turn(history))
            if reply.failed:
                return LoopOutcome(FAILED, rounds, reply.failed)
            entry = {"role": "assistant", "content": reply.text, **reply.extra}
            if reply.stopped:
                entry["stopped"] = True
                history.append(entry)
                return LoopOutcome(STOPPED_BY_USER, rounds, "Stopped; the partial reply is kept.")
            calls = parse_tool_calls(reply.text, names=self.registry.names())
            if not calls:
                history.append(entry)
                return LoopOutcome(ANSWERED, rounds)
            if rounds >= self.max_rounds:
                entry["calls_not_run"] = [c.to_dict() for c in calls]
                history.append(entry)
                names = ", ".join(sorted({c.name or "?" for c in calls}))
                return LoopOutcome(MAX_ROUNDS, rounds,
                                   f"Stopped after {self.max_rounds} tool round(s): the model "
                                   f"asked for {names} again, which was not run. Raise the "
                                   "round limit or ask a more direct question.")
            entry["calls"] = [c.to_dict() for c in calls]
            history.append(entry)
            rounds += 1
            paused = self._run_pending(history, rounds)
            if paused is not None:
                return paused
