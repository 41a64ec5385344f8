"""Dispatch: schema checks, timeouts, exceptions, huge results; the manual tool list."""

from __future__ import annotations

import threading
import time

import pytest

from backend.tools.builtin import builtin_registry
from backend.tools.dispatch import (
    MAX_OBSERVATION_CHARS,
    check_arguments,
    dispatch,
    to_text,
    truncate,
)
from backend.tools.manual import ToolListError, parse_tool_list, tool_list_text
from backend.tools.parsing import ToolCall
from backend.tools.registry import ToolRegistry

release = threading.Event()


def hangs(seconds: float) -> str:
    """Wait on an event that is only set at the end of the test.

    Args:
        seconds: ignored
    """
    release.wait(60)
    return "late"


def raises(message: str) -> str:
    """Raise.

    Args:
        message: the error text
    """
    raise RuntimeError(message)


def exits() -> str:
    """Call sys.exit."""
    raise SystemExit(2)


def huge(megabytes: int = 10) -> str:
    """Return a big string.

    Args:
        megabytes: how many
    """
    return "x" * (megabytes * 1_000_000)


def structured(n: int, tags: list[str] | None = None) -> dict:
    """Return a dict.

    Args:
        n: a number
        tags: optional tags
    """
    return {"n": n, "tags": tags or [], "名字": "值"}


@pytest.fixture
def registry():
    release.clear()
    reg = builtin_registry()
    for func in (hangs, raises, exits, huge, structured):
        reg.register(func)
    yield reg
    release.set()


def test_a_good_call_runs_and_is_timed(registry):
    result = dispatch(ToolCall("calculator", {"expression": "6 * 7"}), registry)
    assert result.status == "ok" and result.output == "42" and result.observation == "42"
    assert 0 <= result.elapsed_s < 5
    structured_result = dispatch(ToolCall("structured", {"n": 1}), registry)
    assert structured_result.output == '{"n": 1, "tags": [], "名字": "值"}'


def test_unknown_tool(registry):
    result = dispatch(ToolCall("weather", {}), registry)
    assert result.status == "unknown_tool"
    assert "no tool named 'weather'" in result.observation and "calculator" in result.observation


@pytest.mark.parametrize(("arguments", "fragment"), [
    ({}, "missing required argument 'expression'"),
    ({"expression": 42}, "argument 'expression': 42 is not of type 'string'"),
    ({"expression": "1", "extra": 1}, "unknown argument(s) 'extra'"),
])
def test_bad_arguments_go_back_to_the_model(registry, arguments, fragment):
    result = dispatch(ToolCall("calculator", arguments), registry)
    assert result.status == "bad_arguments"
    assert fragment in result.observation and "Call it again" in result.observation


def test_argument_types_follow_the_schema(registry):
    tool = registry.get("random_number_generator")
    assert check_arguments(tool, {"seed": 1, "range": [0, 10]}) == []
    assert check_arguments(tool, {"seed": "1", "range": [0, 10]})
    assert check_arguments(tool, {"seed": True, "range": [0, 10]})  # a bool is not an integer
    assert check_arguments(tool, {"seed": 1, "range": ["a", 10]})
    nullable = registry.get("structured")
    assert check_arguments(nullable, {"n": 1, "tags": None}) == []
    assert check_arguments(nullable, {"n": 1, "tags": [1]})


def test_malformed_call_is_not_run(registry):
    result = dispatch(ToolCall("calculator", {}, "not valid JSON"), registry)
    assert result.status == "malformed" and "could not be read" in result.observation


def test_a_tool_that_raises(registry):
    result = dispatch(ToolCall("raises", {"message": "disk on fire"}), registry)
    assert result.status == "error"
    assert result.observation == "Error: raises raised RuntimeError: disk on fire"
    assert "Traceback" not in result.output
    assert dispatch(ToolCall("exits", {}), registry).status == "error"
    calc = dispatch(ToolCall("calculator", {"expression": "1/0"}), registry)
    assert "Division by zero" in calc.observation


def test_a_tool_that_hangs_times_out(registry):
    started = time.perf_counter()
    result = dispatch(ToolCall("hangs", {"seconds": 100}), registry, timeout_s=0.5)
    waited = time.perf_counter() - started
    assert result.status == "timeout" and "did not finish within 0.5 s" in result.observation
    assert 0.4 < waited < 5


def test_stop_ends_the_wait_for_a_running_tool(registry):
    ticks: list[float] = []
    stop_at = time.perf_counter() + 0.4
    result = dispatch(ToolCall("hangs", {"seconds": 1}), registry, timeout_s=30,
                      should_stop=lambda: time.perf_counter() > stop_at, on_wait=ticks.append)
    assert result.status == "stopped"
    assert ticks and ticks == sorted(ticks) and ticks[-1] < 5


def test_a_10_mb_result_is_cut_for_the_model_and_whole_for_the_page(registry):
    result = dispatch(ToolCall("huge", {"megabytes": 10}), registry)
    assert result.status == "ok" and result.truncated
    assert len(result.output) == 10_000_000
    assert len(result.observation) < MAX_OBSERVATION_CHARS + 200
    assert "truncated" in result.observation and "10,000,000" in result.observation
    small = dispatch(ToolCall("huge", {"megabytes": 1}), registry, max_chars=100)
    assert small.observation.startswith("x" * 100) and len(small.observation) < 300


def test_text_helpers():
    assert to_text(None) == "null" and to_text(b"\xff") == "\ufffd"
    assert to_text({"a": {1, 2}}).startswith('{"a": "')  # sets fall back to str()
    assert truncate("abc", 5) == ("abc", False)
    cut, was_cut = truncate("abcdef", 3)
    assert was_cut and cut.startswith("abc\n[... truncated")


def test_no_function_is_an_error_not_a_crash():
    manual = ToolRegistry().with_schemas([{"name": "typed", "description": "d"}])
    assert dispatch(ToolCall("typed", {}), manual).status == "error"


# -- manual mode's tool list --------------------------------------------------------------------

JSON_LIST = """[{"name": "get_current_weather", "description": "Weather",
  "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                 "required": ["location"]}}]"""
YAML_LIST = """
- name: get_current_weather
  description: 当前天气
  parameters:
    type: object
    properties:
      location: {type: string, description: 城市}
    required: [location]
- type: function
  function:
    name: calculator
    description: math
"""


def test_tool_list_as_json_or_yaml():
    assert parse_tool_list(JSON_LIST)[0]["name"] == "get_current_weather"
    tools = parse_tool_list(YAML_LIST)
    assert [t["name"] for t in tools] == ["get_current_weather", "calculator"]
    assert tools[0]["description"] == "当前天气"
    assert tools[1]["parameters"] == {"type": "object", "properties": {}}
    again = parse_tool_list(tool_list_text(tools, "yaml"))
    assert again == parse_tool_list(tool_list_text(tools, "json")) == tools


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty"),
    ('[{"name": "a" "b"}]', "not valid JSON"),
    ("- name: a\n  description: [unclosed", "not valid YAML"),
    ("just a sentence", "must be a list"),
    ("[1, 2]", "Tool 1 is not an object"),
    ('[{"name": "has space"}]', "'name' must be a tool name"),
    ('[{"name": "a"}, {"name": "a"}]', "appears twice"),
    ('[{"name": "a", "parameters": {"type": "string"}}]', "type 'object'"),
    ('[{"name": "a", "parameters": {"type": "object", "properties": {"x": {"type": "bogus"}}}}]',
     "not a valid JSON schema"),
    ('[{"name": "a", "parameters": {"type": "object", "properties": {}, "required": ["x"]}}]',
     "not in 'properties'"),
    ('[{"name": "a", "description": 5}]', "'description' must be text"),
    ("!!python/object/apply:os.system ['true']", "not valid YAML"),
])
def test_tool_list_errors_are_clear(text, fragment):
    with pytest.raises(ToolListError, match=fragment):
        parse_tool_list(text)


def test_billion_laughs_yaml_is_refused_quickly():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    started = time.perf_counter()
    with pytest.raises(ToolListError, match="too large"):
        parse_tool_list("\n".join(lines))
    assert time.perf_counter() - started < 5
