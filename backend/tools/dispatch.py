"""Running one tool call: schema check, a worker thread with a timeout, errors caught, timing.

Every outcome is a `ToolResult`: its ``observation`` is what the model reads (cut to
``max_chars``), its ``output`` the whole result for the page. Nothing here raises on bad input
from the model: unknown tools, wrong arguments, a tool that raises or hangs all become a clear
observation.

A tool that runs over its timeout is abandoned: its worker thread is a daemon and is left to
finish on its own (Python cannot kill a thread); the loop moves on at once.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from backend.tools.parsing import ToolCall
from backend.tools.registry import Tool, ToolRegistry

DEFAULT_TIMEOUT_S = 15.0
MAX_OBSERVATION_CHARS = 4000
POLL_S = 0.1

# status values of a ToolResult
OK, ERROR, MALFORMED, UNKNOWN = "ok", "error", "malformed", "unknown_tool"
BAD_ARGUMENTS, TIMEOUT, STOPPED = "bad_arguments", "timeout", "stopped"
DECLINED, MANUAL = "declined", "manual"


@dataclass
class ToolResult:
    """What came of one call: the whole output (page), the observation (model), how long."""

    name: str
    arguments: dict
    status: str
    output: str
    observation: str
    elapsed_s: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status in (OK, MANUAL)

    def to_dict(self) -> dict:
        return asdict(self)


def to_text(value: Any) -> str:
    """A tool's return value as text: strings as they are, other values as JSON when possible."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None:
        return "null"
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return str(value)


def truncate(text: str, max_chars: int = MAX_OBSERVATION_CHARS) -> tuple[str, bool]:
    """`text` cut to `max_chars`, with a note saying how long it was; and whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    note = (f"\n[... truncated: the result is {len(text):,} characters long; "
            f"only the first {max_chars:,} are shown]")
    return text[:max_chars] + note, True


def _result(call: ToolCall, status: str, output: str, elapsed: float = 0.0,
            max_chars: int = MAX_OBSERVATION_CHARS) -> ToolResult:
    observation, cut = truncate(output, max_chars)
    return ToolResult(call.name, dict(call.arguments), status, output, observation, elapsed, cut)


def _validator_schema(schema: Any) -> Any:
    """A copy of `schema` where OpenAPI's ``nullable: true`` (from get_json_schema) allows null."""
    if isinstance(schema, list):
        return [_validator_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _validator_schema(v) for k, v in schema.items()}
    if out.pop("nullable", False):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


def check_arguments(tool: Tool, arguments: dict) -> list[str]:
    """Readable problems of `arguments` against the tool's schema (empty when they fit)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(arguments, dict):
        return ["the arguments must be an object of name: value pairs"]
    problems = []
    schema = _validator_schema(tool.parameters or {"type": "object"})
    try:
        validator = Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    except SchemaError as exc:
        return [f"the tool's own parameter schema is invalid: {exc.message}"]
    for error in errors[:10]:
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            problems.append(f"missing required argument {missing!r}")
        else:
            where = f"argument {path!r}: " if path else ""
            message = error.message if len(error.message) <= 300 else error.message[:300] + "…"
            problems.append(where + message)
    if tool.function is not None:
        try:
            accepted = set(inspect.signature(tool.function).parameters)
        except (TypeError, ValueError):
            accepted = set(arguments)
        unknown = sorted(set(arguments) - accepted)
        if unknown:
            problems.append(f"unknown argument(s) {', '.join(map(repr, unknown))}; "
                            f"this tool takes {', '.join(sorted(accepted)) or 'no arguments'}")
    return problems


def precheck(call: ToolCall, registry: ToolRegistry,
             max_chars: int = MAX_OBSERVATION_CHARS) -> ToolResult | None:
    """The error result for a call that must not run (malformed, unknown tool, bad arguments)."""
    if call.error:
        return _result(call, MALFORMED, f"Error: the tool call could not be read: {call.error}",
                       max_chars=max_chars)
    tool = registry.get(call.name)
    if tool is None:
        known = ", ".join(registry.names()) or "none"
        return _result(call, UNKNOWN, f"Error: there is no tool named {call.name!r}. "
                                      f"Available tools: {known}.", max_chars=max_chars)
    problems = check_arguments(tool, call.arguments)
    if problems:
        text = (f"Error: the arguments do not match the parameters of {call.name}: "
                + "; ".join(problems) + ". Call it again with correct arguments.")
        return _result(call, BAD_ARGUMENTS, text, max_chars=max_chars)
    return None


def run_tool(
    tool: Tool, call: ToolCall, timeout_s: float | None = None,
    max_chars: int = MAX_OBSERVATION_CHARS, should_stop: Callable[[], bool] | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> ToolResult:
    """Run a checked call in a worker thread; stop waiting at the timeout or on `should_stop`.

    `on_wait(seconds)` is called about every 0.1 s while the tool runs (a UI draws progress
    there; an exception it raises, such as Streamlit's rerun, ends the wait).
    """
    if tool.function is None:
        return _result(call, ERROR, f"Error: {call.name} has no Python function to run.",
                       max_chars=max_chars)
    limit = timeout_s if timeout_s is not None else (tool.timeout_s or DEFAULT_TIMEOUT_S)
    box: dict[str, Any] = {}
    done = threading.Event()
    function, arguments = tool.function, dict(call.arguments)

    def work() -> None:
        try:
            box["value"] = to_text(function(**arguments))
        except BaseException as exc:  # noqa: BLE001 - reported to the model and the page
            box["error"] = exc
        finally:
            done.set()

    started = time.perf_counter()
    threading.Thread(target=work, name=f"tool-{call.name}", daemon=True).start()
    while not done.wait(POLL_S):
        elapsed = time.perf_counter() - started
        if on_wait is not None:
            on_wait(elapsed)
        if should_stop is not None and should_stop():
            return stopped_result(call, elapsed, max_chars)
        if elapsed >= limit:
            return _result(call, TIMEOUT, f"Error: {call.name} did not finish within {limit:g} s "
                                          "and was abandoned.", elapsed, max_chars)
    elapsed = time.perf_counter() - started
    if "error" in box:
        exc = box["error"]
        detail = str(exc)[:2000] or "(no message)"
        return _result(call, ERROR, f"Error: {call.name} raised {type(exc).__name__}: {detail}",
                       elapsed, max_chars)
    return _result(call, OK, box.get("value", ""), elapsed, max_chars)


def dispatch(
    call: ToolCall, registry: ToolRegistry, timeout_s: float | None = None,
    max_chars: int = MAX_OBSERVATION_CHARS, should_stop: Callable[[], bool] | None = None,
    on_wait: Callable[[float], None] | None = None,
) -> ToolResult:
    """Check and run one call; every failure becomes a result with a clear observation."""
    rejected = precheck(call, registry, max_chars)
    if rejected is not None:
        return rejected
    tool = registry.get(call.name)
    assert tool is not None
    return run_tool(tool, call, timeout_s, max_chars, should_stop, on_wait)


def manual_result(call: ToolCall, text: str, max_chars: int = MAX_OBSERVATION_CHARS) -> ToolResult:
    """The observation the user typed for a tool that has no Python function."""
    return _result(call, MANUAL, text, max_chars=max_chars)


def stopped_result(call: ToolCall, elapsed: float = 0.0,
                   max_chars: int = MAX_OBSERVATION_CHARS) -> ToolResult:
    """The user stopped the call (while it ran, or before it started)."""
    return _result(call, STOPPED, "The user stopped this tool before it finished.", elapsed,
                   max_chars)


def declined_result(call: ToolCall) -> ToolResult:
    """The user did not allow this call to run."""
    return _result(call, DECLINED, f"The user declined to run {call.name}; it was not run.")
