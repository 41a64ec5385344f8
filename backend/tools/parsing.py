"""Reading tool calls out of model text, in every common format, without ever running the text.

Formats (see shared/formats.md, section 2):

- Hermes / Qwen: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, one or several;
  ``arguments`` may also be a JSON string.
- ChatGLM3: a line with the tool name, then a python block ``tool_call(key=literal, ...)``;
  the call is read with ``ast`` (literal values only), never evaluated.
- GLM-4: the tool name on the first line, then a JSON object of arguments.
- Plain JSON: ``{"name": ..., "arguments" | "parameters": {...}}`` or a list of them, bare, inside
  a json fence, or after some prose (also the OpenAI ``{"function": {...}}`` wrapping).

`parse_tool_calls` never raises: text without a call gives ``[]``; a call that cannot be read
gives a `ToolCall` whose ``.error`` says why (so the model can be told).
"""

from __future__ import annotations

import ast
import json
import re
from ast import literal_eval as read_literal  # literals only: it never runs code
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from backend.tools.registry import NAME_RE

MAX_TEXT_CHARS = 200_000  # longer text is cut before parsing (a reply is far shorter)
MAX_CALLS = 32
MAX_CALL_CHARS = 50_000  # one tool_call(...) expression
_TAG_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:```|$)", re.DOTALL)
_NAME_IN_JSON_RE = re.compile(r'"name"\s*:\s*"([^"\\]{1,64})"')
_SPECIAL_TOKEN_RE = re.compile(r"<\|[a-z_]+\|>")


@dataclass
class ToolCall:
    """One call the model asked for. ``error`` is None when the call is well formed."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "arguments": self.arguments, "error": self.error}


def parse_tool_calls(text: Any, names: Collection[str] | None = None) -> list[ToolCall]:
    """All tool calls in `text` (possibly none). Never raises, never runs anything.

    `names`, when given, are the known tool names: the GLM-4 form (a bare name line, then JSON)
    only counts for those, so that a reply like "Result\n{...}" is not taken for a call.
    """
    if not isinstance(text, str) or not text.strip():
        return []
    text = text[:MAX_TEXT_CHARS]
    try:
        for reader in (_hermes, _chatglm3, _glm4, _plain_json):
            calls = reader(text, names) if reader is _glm4 else reader(text)
            if calls:
                return calls[:MAX_CALLS]
    except Exception as exc:  # noqa: BLE001 - the contract is: never raise on model text
        return [ToolCall(name="", error=f"The tool call could not be read ({type(exc).__name__}).")]
    return []


# -- Hermes / Qwen ------------------------------------------------------------------------------

def _hermes(text: str) -> list[ToolCall]:
    if "<tool_call>" not in text:
        return []
    calls = []
    for body in _TAG_RE.findall(text):
        body = _strip_fence(body.strip())
        value, error = _loads(body)
        if error is not None:
            calls.append(ToolCall(_guess_name(body), {},
                                  f"The <tool_call> is not valid JSON: {error}"))
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            call = _from_json_object(item)
            calls.append(call or ToolCall(
                _guess_name(body), {},
                'A <tool_call> must hold {"name": ..., "arguments": {...}}.'))
    return calls


# -- ChatGLM3 -----------------------------------------------------------------------------------

_GLM3_CALL_RE = re.compile(r"^[ \t]*tool_call\s*\(", re.MULTILINE)  # at a line start only


def _chatglm3(text: str) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for match in _GLM3_CALL_RE.finditer(text):
        if len(calls) >= MAX_CALLS:
            break
        start = match.end() - len(match.group().lstrip())
        source = _call_source(text, start)
        name = _name_before(text, start)
        calls.append(_read_tool_call(source, name))
    return calls


def _call_source(text: str, start: int) -> str:
    """The `tool_call(...)` expression starting at `start`, up to its closing parenthesis."""
    end_fence = text.find("```", start, start + MAX_CALL_CHARS)
    segment = text[start:end_fence if end_fence >= 0 else start + MAX_CALL_CHARS].rstrip()
    depth, quote, escaped = 0, "", False
    for i, char in enumerate(segment):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return segment[:i + 1]
    return segment


def _name_before(text: str, start: int) -> str:
    """The tool name: the last non-empty line before the call (skipping its ``` fence line)."""
    before = text[max(0, start - 500):start]
    lines = [_SPECIAL_TOKEN_RE.sub("", line).strip() for line in before.splitlines()]
    lines = [line for line in lines if line]
    if lines and lines[-1].startswith("```"):
        lines.pop()
    if not lines:
        return ""
    candidate = lines[-1].strip("`*: ")
    return candidate if NAME_RE.match(candidate) else ""


def _read_tool_call(source: str, name: str) -> ToolCall:
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ToolCall(name, {}, "The tool_call(...) line is not valid Python syntax.")
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) \
            or call.func.id != "tool_call":
        return ToolCall(name, {}, "Expected exactly one tool_call(...) expression.")
    if call.args:
        return ToolCall(name, {}, "tool_call(...) takes keyword arguments only, like "
                                  'tool_call(location="Beijing").')
    arguments: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            return ToolCall(name, {}, "tool_call(**...) is not allowed; write each argument.")
        try:
            arguments[keyword.arg] = read_literal(keyword.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return ToolCall(name, {}, f"Argument {keyword.arg!r} is not a literal value "
                                      "(only strings, numbers, lists, dicts, True/False/None).")
    if not name:
        return ToolCall("", arguments, "The tool name is missing: write it on the line before "
                                       "the tool_call(...) block.")
    return ToolCall(name, arguments)


# -- GLM-4 --------------------------------------------------------------------------------------

def _glm4(text: str, names: Collection[str] | None) -> list[ToolCall]:
    stripped = _SPECIAL_TOKEN_RE.sub("", text).strip()
    first, _, rest = stripped.partition("\n")
    name = first.strip()
    if not rest.strip() or not NAME_RE.match(name) or name in ("json", "python"):
        return []
    if names is not None and name not in names:
        return []
    body = _strip_fence(rest.strip())
    if not body.startswith("{"):
        return []
    value, error = _loads(body)
    if error is not None:
        return [ToolCall(name, {}, f"The arguments after {name!r} are not valid JSON: {error}")]
    if not isinstance(value, dict) or _from_json_object(value) is not None:
        return []  # a full {"name": ...} call object: the plain-JSON reader takes it
    return [ToolCall(name, value)]


# -- Plain JSON ---------------------------------------------------------------------------------

def _plain_json(text: str) -> list[ToolCall]:
    fenced = [body for lang, body in _FENCE_RE.findall(text) if lang.lower() in ("", "json")]
    for source in [*fenced, text]:
        calls = _json_calls_in(source)
        if calls:
            return calls
    return []


def _json_calls_in(text: str) -> list[ToolCall]:
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    pos, tries = 0, 0
    while tries < 200:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            break
        start = min(starts)
        tries += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            if text[start] == "{" and _NAME_IN_JSON_RE.match(text[start + 1:].lstrip()) \
                    and not calls and ('"arguments"' in text or '"parameters"' in text):
                return [ToolCall(_guess_name(text[start:]), {},
                                 "The tool call is not valid JSON.")]
            pos = start + 1
            continue
        items = value if isinstance(value, list) else [value]
        found = [call for call in map(_from_json_object, items) if call is not None]
        calls.extend(found)
        pos = end
    return calls


def _from_json_object(item: Any) -> ToolCall | None:
    """A call from a JSON object, or None when the object is not call-shaped."""
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict):  # OpenAI: {"type": "function", "function": {...}}
        item = item["function"]
    name = item.get("name")
    if not isinstance(name, str) or not ("arguments" in item or "parameters" in item):
        return None
    arguments = item.get("arguments", item.get("parameters"))
    if isinstance(arguments, str):
        if not arguments.strip():
            arguments = {}
        else:
            arguments, error = _loads(arguments)
            if error is not None:
                return ToolCall(name, {}, f"The arguments string is not valid JSON: {error}")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return ToolCall(name, {}, "The arguments must be a JSON object of name: value pairs.")
    if not name.strip():
        return ToolCall(name, arguments, "The tool name is empty.")
    return ToolCall(name.strip(), arguments)


# -- helpers ------------------------------------------------------------------------------------

def _loads(source: str) -> tuple[Any, str | None]:
    try:
        return json.loads(source), None
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    except (ValueError, RecursionError) as exc:
        return None, type(exc).__name__


def _strip_fence(body: str) -> str:
    match = re.fullmatch(r"```[ \t]*\w*[ \t]*\n(.*?)\n?```", body.strip(), re.DOTALL)
    return match.group(1).strip() if match else body


def _guess_name(source: str) -> str:
    match = _NAME_IN_JSON_RE.search(source)
    return match.group(1) if match else ""
