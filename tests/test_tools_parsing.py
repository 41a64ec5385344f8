"""Parser corpus: every tool-call format, several calls, nested and Chinese arguments, fenced and
bare JSON, malformed and hostile text. The parser reads; it never runs anything."""

from __future__ import annotations

import json
import time

import pytest

from backend.tools import ToolCall, parse_tool_calls

FENCE = "```"


def ok(name: str, arguments: dict) -> tuple[str, dict]:
    return name, arguments


def calls_of(text: str, names=None) -> list[tuple[str, dict]]:
    calls = parse_tool_calls(text, names)
    assert all(c.error is None for c in calls), [c.error for c in calls]
    return [(c.name, c.arguments) for c in calls]


# -- ChatGLM3 -----------------------------------------------------------------------------------

CHATGLM3 = [
    (f'get_current_weather\n{FENCE}python\ntool_call(location="beijing", unit="celsius")\n{FENCE}',
     [ok("get_current_weather", {"location": "beijing", "unit": "celsius"})]),
    # raw protocol text: prose turn, then the call turn with its metadata
    ("Let me look up today's weather.\n<|assistant|>get_current_weather\n"
     f'{FENCE}python\ntool_call(location="beijing")\n{FENCE}',
     [ok("get_current_weather", {"location": "beijing"})]),
    (f'get_current_weather\n{FENCE}python\ntool_call(location="北京", unit="摄氏度")\n{FENCE}',
     [ok("get_current_weather", {"location": "北京", "unit": "摄氏度"})]),
    (f"search\n{FENCE}python\ntool_call(q='a (b) c', opts={{'k': [1, 2.5, {{'n': None}}]}}, "
     f"on=True, off=False, neg=-3)\n{FENCE}",
     [ok("search", {"q": "a (b) c", "opts": {"k": [1, 2.5, {"n": None}]}, "on": True,
                    "off": False, "neg": -3})]),
    ("calculator\ntool_call(expression='2 + 2')",  # unfenced
     [ok("calculator", {"expression": "2 + 2"})]),
    (f'<|assistant|>a\n{FENCE}python\ntool_call(x=1)\n{FENCE}\n'
     f'<|assistant|>b\n{FENCE}python\ntool_call(y="two")\n{FENCE}',  # several
     [ok("a", {"x": 1}), ok("b", {"y": "two"})]),
    (f"random_number_generator\n{FENCE}python\ntool_call(seed=42, range=(0, 100))\n{FENCE}",
     [ok("random_number_generator", {"seed": 42, "range": (0, 100)})]),
]


@pytest.mark.parametrize(("text", "expected"), CHATGLM3)
def test_chatglm3_calls_are_read_with_ast(text, expected):
    assert calls_of(text) == expected


@pytest.mark.parametrize(("text", "fragment"), [
    (f"calc\n{FENCE}python\ntool_call('2+2')\n{FENCE}", "keyword arguments only"),
    (f"calc\n{FENCE}python\ntool_call(expression=\"2+2\n{FENCE}", "not valid Python"),
    (f"calc\n{FENCE}python\ntool_call(**{{'a': 1}})\n{FENCE}", "not allowed"),
    (f"calc\n{FENCE}python\ntool_call(x=(lambda: 1)())\n{FENCE}", "not a literal"),
    (f"calc\n{FENCE}python\ntool_call(x=open('/etc/passwd').read())\n{FENCE}", "not a literal"),
    (f"{FENCE}python\ntool_call(a=1)\n{FENCE}", "name is missing"),
])
def test_chatglm3_malformed_calls_carry_an_error(text, fragment):
    calls = parse_tool_calls(text)
    assert calls and calls[0].error is not None
    assert fragment in calls[0].error


def test_hostile_chatglm3_call_is_never_run(tmp_path):
    target = tmp_path / "pwned"
    text = f'run\n{FENCE}python\ntool_call(x=__import__("os").system("touch {target}"))\n{FENCE}'
    calls = parse_tool_calls(text)
    assert len(calls) == 1 and calls[0].error is not None
    assert "not a literal" in calls[0].error
    assert calls[0].arguments == {}
    # the same payload in every other format
    payload = f'__import__("os").system("touch {target}")'
    for variant in (f'<tool_call>{{"name": "x", "arguments": {payload}}}</tool_call>',
                    f"x\n{payload}",
                    f'{{"name": "x", "arguments": {{"a": {payload}}}}}'):
        for call in parse_tool_calls(variant):
            assert call.error is not None or call.arguments == {}
    assert not target.exists()


# -- Hermes / Qwen ------------------------------------------------------------------------------

HERMES = [
    ('<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Beijing"}}\n'
     "</tool_call>",
     [ok("get_current_weather", {"location": "Beijing"})]),
    ('I will check both.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
     '<tool_call>\n{"name": "b", "arguments": {"y": [1, {"z": "深"}]}}\n</tool_call>',
     [ok("a", {"x": 1}), ok("b", {"y": [1, {"z": "深"}]})]),
    ('<tool_call>{"name": "w", "arguments": "{\\"location\\": \\"上海\\"}"}</tool_call>',
     [ok("w", {"location": "上海"})]),
    ('<tool_call>\n{"name": "w", "arguments": {"location": "Paris"}}',  # no closing tag
     [ok("w", {"location": "Paris"})]),
    (f'<tool_call>\n{FENCE}json\n{{"name": "w", "parameters": {{}}}}\n{FENCE}\n</tool_call>',
     [ok("w", {})]),
    ('<tool_call>[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"k": null}}]'
     "</tool_call>", [ok("a", {}), ok("b", {"k": None})]),
]


@pytest.mark.parametrize(("text", "expected"), HERMES)
def test_hermes_tool_call_tags(text, expected):
    assert calls_of(text) == expected


@pytest.mark.parametrize(("text", "name", "fragment"), [
    ('<tool_call>{"name": "w", "arguments": {"location": "Paris"</tool_call>', "w",
     "not valid JSON"),
    ('<tool_call>{"name": "w", "arguments": "{not json"}</tool_call>', "w", "not valid JSON"),
    ('<tool_call>{"name": "w", "arguments": [1, 2]}</tool_call>', "w", "JSON object"),
    ("<tool_call>just words</tool_call>", "", "not valid JSON"),
    ('<tool_call>{"tool": "w"}</tool_call>', "", '"name"'),
])
def test_hermes_malformed(text, name, fragment):
    calls = parse_tool_calls(text)
    assert len(calls) == 1
    assert calls[0].name == name and calls[0].error and fragment in calls[0].error


# -- GLM-4 --------------------------------------------------------------------------------------

def test_glm4_name_line_then_json_arguments():
    text = 'get_current_weather\n{"location": "Beijing", "unit": "celsius"}'
    assert calls_of(text) == [ok("get_current_weather", {"location": "Beijing", "unit": "celsius"})]
    assert calls_of("<|assistant|>get_current_weather\n" + '{"location": "杭州", "days": [1, 2]}') \
        == [ok("get_current_weather", {"location": "杭州", "days": [1, 2]})]
    nested = 'plan\n{"steps": [{"do": "a", "with": {"deep": {"er": [true, null]}}}]}'
    assert calls_of(nested) == [ok("plan", {"steps": [{"do": "a",
                                                      "with": {"deep": {"er": [True, None]}}}]})]


def test_glm4_known_names_keep_prose_from_being_a_call():
    text = 'Result\n{"temperature": 22}'
    assert calls_of(text, names={"get_current_weather"}) == []
    assert calls_of('get_current_weather\n{"location": "x"}', names={"get_current_weather"}) \
        == [ok("get_current_weather", {"location": "x"})]


def test_glm4_malformed_arguments():
    calls = parse_tool_calls('get_current_weather\n{"location": "Beijing",}')
    assert len(calls) == 1 and calls[0].name == "get_current_weather" and calls[0].error


# -- plain JSON ---------------------------------------------------------------------------------

CALL = {"name": "calculator", "arguments": {"expression": "2+2"}}
PLAIN = [
    (json.dumps(CALL), [ok("calculator", {"expression": "2+2"})]),
    (json.dumps({"name": "calculator", "parameters": {"expression": "3*3"}}),
     [ok("calculator", {"expression": "3*3"})]),
    (json.dumps([CALL, {"name": "convert_units", "arguments": {"value": 1, "from_unit": "km",
                                                              "to_unit": "m"}}]),
     [ok("calculator", {"expression": "2+2"}),
      ok("convert_units", {"value": 1, "from_unit": "km", "to_unit": "m"})]),
    (f"{FENCE}json\n{json.dumps(CALL, indent=2)}\n{FENCE}",
     [ok("calculator", {"expression": "2+2"})]),
    (f"{FENCE}\n{json.dumps(CALL)}\n{FENCE}", [ok("calculator", {"expression": "2+2"})]),
    (f"Sure! I'll use the calculator for that: {json.dumps(CALL)} and wait for the result.",
     [ok("calculator", {"expression": "2+2"})]),
    (f"Here is the call:\n\n{FENCE}json\n[{json.dumps(CALL)}]\n{FENCE}\nDone.",
     [ok("calculator", {"expression": "2+2"})]),
    (json.dumps({"type": "function", "function": {"name": "calculator",
                                                  "arguments": '{"expression": "1"}'}}),
     [ok("calculator", {"expression": "1"})]),
    (json.dumps({"name": "翻译", "arguments": {"文本": "你好，世界", "目标": "英语"}},
                ensure_ascii=False),
     [ok("翻译", {"文本": "你好，世界", "目标": "英语"})]),
    (json.dumps({"name": "deep", "arguments": {"a": {"b": {"c": [{"d": [1, [2, [3]]]}]}}}}),
     [ok("deep", {"a": {"b": {"c": [{"d": [1, [2, [3]]]}]}}})]),
    ('{"name": "calculator", "arguments": {}}', [ok("calculator", {})]),
    ('{"name": "calculator", "arguments": null}', [ok("calculator", {})]),
    ('{"name": "run_shell_command", "arguments": {"command": "grep -n tool_call( x.py"}}',
     [ok("run_shell_command", {"command": "grep -n tool_call( x.py"})]),
]


@pytest.mark.parametrize(("text", "expected"), PLAIN)
def test_plain_json_calls(text, expected):
    assert calls_of(text) == expected


def test_malformed_plain_json_call_reports_an_error():
    calls = parse_tool_calls('{"name": "calculator", "arguments": {"expression": "2+2"}')
    assert len(calls) == 1 and calls[0].name == "calculator" and "not valid JSON" in calls[0].error


# -- no call, garbage, hostile ------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "", "   ", "The capital of France is Paris.", "12 * 7 = 84", '{"temperature": 22}',
    '[1, 2, 3] and {"a": 1}', "def f():\n    return 1", f"{FENCE}python\nprint('hi')\n{FENCE}",
    "name\narguments", '{"name": "x"}', "Use tool_call carefully.",
])
def test_text_without_a_call_gives_an_empty_list(text):
    assert parse_tool_calls(text) == []


@pytest.mark.parametrize("value", [None, 42, b'{"name": "x", "arguments": {}}', ["a"], {"a": 1}])
def test_non_text_gives_an_empty_list(value):
    assert parse_tool_calls(value) == []


@pytest.mark.parametrize("text", [
    "[" * 100_000, "{" * 100_000, '{"name": "x", "arguments": ' + "[" * 50_000,
    "<tool_call>" * 5_000, "tool_call(" * 5_000, f"x\n{FENCE}python\ntool_call(a=" + "(" * 5000,
    "x\n" + "{" * 10_000, '{"a": "' + "\\" * 10_001, "\x00\xff\ud800" * 1000,
    "tool_call(x=" + "[" * 10_000 + "]" * 10_000 + ")",
    '<tool_call>{"name": "w", "arguments": ' + "[" * 5000 + "]" * 5000 + "}</tool_call>",
])
def test_garbage_and_deep_nesting_never_raise(text):
    started = time.perf_counter()
    calls = parse_tool_calls(text)
    assert isinstance(calls, list)
    assert all(isinstance(c, ToolCall) for c in calls)
    assert time.perf_counter() - started < 10


def test_calls_are_plain_data():
    call = parse_tool_calls(json.dumps(CALL))[0]
    assert isinstance(call.name, str) and isinstance(call.arguments, dict) and call.error is None
    assert call.to_dict() == {"name": "calculator", "arguments": {"expression": "2+2"},
                              "error": None}
