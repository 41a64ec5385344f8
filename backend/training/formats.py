"""Fine-tuning record formats, detected per record, converted to one list of chat turns.

Formats (see /work/shared/formats.md, section 3):

- ``chatglm3``: ``{"conversations": [...], "tools": [...]}``; a ``tool`` message becomes an
  assistant tool-call turn (trained) plus an observation turn (not trained);
- ``messages``: GLM-4 / OpenAI ``{"messages": [...]}``, tools in the system message, the
  ``observation`` (or ``tool``) role, assistant ``tool_calls``;
- ``alpaca`` / ``adgen`` / ``prompt-response``: single-turn records.

Loss by role: system, user and observation turns are not trained, assistant turns are; a
message's boolean ``loss`` overrides that.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.training.errors import DataError
from backend.training.records import Record

TOOLS_PREFIX = (
    "Answer the following questions as best as you can. You have access to the following tools:"
)
PROMPT_KEYS = ("instruction", "prompt", "content")
RESPONSE_KEYS = ("output", "response", "summary")
TRAINED_ROLES = {"assistant"}


@dataclass(frozen=True)
class Turn:
    """One chat turn in the model's roles: system, user, assistant or observation."""

    role: str
    content: str
    loss: bool
    message: int  # 1-based number of the source message (0 for generated turns)


@dataclass(frozen=True)
class Conversation:
    """A record converted to turns, with the format it was read as."""

    turns: tuple[Turn, ...]
    format: str
    record: Record


class _Bad(Exception):
    """A problem inside one record; turned into a DataError naming file and record."""


def _text(value: Any) -> str:
    """Observation payloads may be any JSON value: keep strings, dump the rest."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _loss(msg: dict, role: str, number: int) -> bool:
    if "loss" not in msg or msg["loss"] is None:
        return role in TRAINED_ROLES
    if not isinstance(msg["loss"], bool):
        raise _Bad(f"message {number}: 'loss' must be true or false, got {msg['loss']!r}")
    return msg["loss"]


def _content(msg: dict, number: int, role: str) -> str:
    if "content" not in msg:
        raise _Bad(f"message {number} ({role}) has no 'content'")
    content = msg["content"]
    if role == "observation":
        return _text(content)
    if not isinstance(content, str):
        raise _Bad(f"message {number} ({role}): 'content' must be a string, "
                   f"got {type(content).__name__}")
    return content


def tool_call_text(name: str, parameters: dict) -> str:
    """ChatGLM3's tool-call body: the tool name, then ``tool_call(k=v, ...)`` in a python fence."""
    call = ast.Call(
        func=ast.Name(id="tool_call"), args=[],
        keywords=[ast.keyword(arg=k, value=ast.Constant(v)) for k, v in parameters.items()],
    )
    return f"{name}\n```python\n{ast.unparse(call)}\n```"


def tools_text(tools: Any) -> str:
    """The tool list as the system turn carries it."""
    return f"{TOOLS_PREFIX}\n{json.dumps(tools, indent=4, ensure_ascii=False)}"


def _with_tools(turns: list[Turn], tools: Any) -> list[Turn]:
    if tools is None or tools == []:
        return turns
    if not isinstance(tools, list | dict):
        raise _Bad(f"'tools' must be a list, got {type(tools).__name__}")
    if turns and turns[0].role == "system":
        first = turns[0]
        merged = f"{first.content}\n\n{tools_text(tools)}" if first.content.strip() \
            else tools_text(tools)
        return [Turn("system", merged, first.loss, first.message), *turns[1:]]
    return [Turn("system", tools_text(tools), False, 0), *turns]


def _message_list(data: dict, key: str) -> list:
    messages = data[key]
    if not isinstance(messages, list):
        raise _Bad(f"'{key}' must be a list of messages, got {type(messages).__name__}")
    if not messages:
        raise _Bad(f"'{key}' is empty")
    return messages


def _role(msg: Any, number: int) -> str:
    if not isinstance(msg, dict):
        raise _Bad(f"message {number} must be an object, got {type(msg).__name__}")
    role = msg.get("role")
    if not isinstance(role, str) or not role:
        raise _Bad(f"message {number} has no 'role'")
    return role


def _json_value(value: Any, error: str) -> Any:
    """Tool arguments given as a JSON string (blank: {}) or already as a value."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value) if value.strip() else {}
    except json.JSONDecodeError as exc:
        raise _Bad(error) from exc


def _chatglm3(data: dict) -> list[Turn]:
    turns: list[Turn] = []
    for number, msg in enumerate(_message_list(data, "conversations"), start=1):
        role = _role(msg, number)
        if role == "tool":
            name = msg.get("name")
            if not isinstance(name, str) or not name:
                raise _Bad(f"message {number} (tool) has no tool 'name'")
            params = _json_value(msg.get("parameters", {}),
                                 f"message {number} (tool): 'parameters' is not JSON")
            if not isinstance(params, dict):
                raise _Bad(f"message {number} (tool): 'parameters' must be an object")
            if "observation" not in msg:
                raise _Bad(f"message {number} (tool) has no 'observation'")
            turns.append(Turn("assistant", tool_call_text(name, params),
                              _loss(msg, "assistant", number), number))
            turns.append(Turn("observation", _text(msg["observation"]), False, number))
        elif role in ("system", "user", "assistant", "observation"):
            turns.append(Turn(role, _content(msg, number, role), _loss(msg, role, number), number))
        else:
            raise _Bad(f"message {number}: unknown role {role!r} (expected system, user, "
                       "assistant, tool or observation)")
    return _with_tools(turns, data.get("tools"))


def _tool_calls_text(calls: Any, number: int) -> str:
    if not isinstance(calls, list):
        raise _Bad(f"message {number}: 'tool_calls' must be a list")
    lines = []
    for call in calls:
        function = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _Bad(f"message {number}: a tool call has no function name")
        arguments = _json_value(function.get("arguments", {}),
                                f"message {number}: tool call arguments are not JSON")
        lines.append(json.dumps({"name": function["name"], "arguments": arguments},
                                ensure_ascii=False))
    return "\n".join(lines)


def _messages(data: dict) -> list[Turn]:
    turns: list[Turn] = []
    tools = data.get("tools")
    for number, msg in enumerate(_message_list(data, "messages"), start=1):
        role = _role(msg, number)
        if role in ("tool", "function"):
            role = "observation"
        if role == "system" and msg.get("tools") is not None:
            tools = msg["tools"]
        if role == "assistant" and msg.get("tool_calls"):
            content = msg.get("content") or ""
            if not isinstance(content, str):
                raise _Bad(f"message {number} (assistant): 'content' must be a string")
            calls = _tool_calls_text(msg["tool_calls"], number)
            content = f"{content}\n{calls}" if content.strip() else calls
        elif role in ("system", "user", "assistant", "observation"):
            content = _content(msg, number, role)
        else:
            raise _Bad(f"message {number}: unknown role {role!r} (expected system, user, "
                       "assistant, observation or tool)")
        turns.append(Turn(role, content, _loss(msg, role, number), number))
    return _with_tools(turns, tools)


def _single_turn(data: dict) -> tuple[list[Turn], str]:
    prompt_key = next(k for k in PROMPT_KEYS if k in data)
    response_key = next(k for k in RESPONSE_KEYS if k in data)
    prompt, response = data[prompt_key], data[response_key]
    if not isinstance(prompt, str):
        raise _Bad(f"'{prompt_key}' must be a string, got {type(prompt).__name__}")
    if not isinstance(response, str):
        raise _Bad(f"'{response_key}' must be a string, got {type(response).__name__}")
    if prompt_key == "instruction" and data.get("input"):
        if not isinstance(data["input"], str):
            raise _Bad("'input' must be a string")
        prompt = f"{prompt}\n{data['input']}"
    if not prompt.strip():
        raise _Bad(f"'{prompt_key}' is empty")
    if not response.strip():
        raise _Bad(f"'{response_key}' is empty: nothing to train on")
    turns = [Turn("user", prompt, False, 1), Turn("assistant", response, True, 2)]
    system = data.get("system")
    if system:
        if not isinstance(system, str):
            raise _Bad("'system' must be a string")
        turns.insert(0, Turn("system", system, False, 0))
    name = {"instruction": "alpaca", "content": "adgen"}.get(prompt_key, "prompt-response")
    return turns, name


def _check_order(turns: list[Turn]) -> None:
    """Roles in the order the dialog protocol allows, and at least one trained turn."""
    previous: Turn | None = None
    for index, turn in enumerate(turns):
        label = f"message {turn.message}" if turn.message else "the tools' system turn"
        if turn.role == "system" and index != 0:
            raise _Bad(f"{label}: a system message may only come first, and only once")
        if turn.role == "user" and previous is not None and previous.role == "user":
            raise _Bad(f"two user messages in a row (messages {previous.message} and "
                       f"{turn.message}): roles out of order")
        if turn.role == "assistant" and (previous is None or previous.role == "system"):
            raise _Bad(f"{label}: an assistant message must follow a user message or an "
                       "observation: roles out of order")
        if turn.role == "observation" and (previous is None or previous.role != "assistant"):
            raise _Bad(f"{label}: an observation must follow an assistant message (the tool "
                       "call): roles out of order")
        previous = turn
    if not any(t.role == "assistant" for t in turns):
        raise _Bad("no assistant turn: nothing to train on")
    if not any(t.loss for t in turns):
        raise _Bad("every message has loss false: nothing to train on")


def detect_format(data: Any) -> str | None:
    """The format a record looks like, or None."""
    if not isinstance(data, dict):
        return None
    if "conversations" in data:
        return "chatglm3"
    if "messages" in data:
        return "messages"
    if any(k in data for k in PROMPT_KEYS) and any(k in data for k in RESPONSE_KEYS):
        return "single-turn"
    return None


def to_conversation(record: Record, path: Path) -> Conversation:
    """Convert one record; DataError names the file, the record (and line) and the problem."""
    data = record.data
    kind = detect_format(data)
    try:
        if not isinstance(data, dict):
            raise _Bad(f"expected a JSON object, got {type(data).__name__}")
        if kind is None:
            keys = ", ".join(sorted(map(str, data))) or "none"
            raise _Bad("unknown format: expected 'conversations', 'messages', or a prompt field "
                       f"({'/'.join(PROMPT_KEYS)}) with a response field "
                       f"({'/'.join(RESPONSE_KEYS)}); its keys: {keys}")
        if kind == "chatglm3":
            turns = _chatglm3(data)
        elif kind == "messages":
            turns = _messages(data)
        else:
            turns, kind = _single_turn(data)
        _check_order(turns)
    except _Bad as exc:
        raise DataError(f"{record.where(path)}: {exc}") from None
    return Conversation(tuple(turns), kind, record)
