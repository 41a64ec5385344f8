"""The tool loop: pinned with a scripted stand-in for the model, then run on the real embedded
model; and the tool prompting (template `tools` or ChatGLM3's system prompt)."""

from __future__ import annotations

import copy
import json
import threading
import time

import pytest

from backend.prompting import render_prompt
from backend.sampling import SamplingSettings
from backend.tools.builtin import builtin_registry, run_shell_command
from backend.tools.engine_turn import engine_turn
from backend.tools.loop import (
    ANSWERED,
    FAILED,
    MAX_ROUNDS,
    NEEDS_CONFIRMATION,
    NEEDS_OBSERVATION,
    STOPPED_BY_USER,
    LoopHooks,
    ToolLoop,
    TurnReply,
    close_interrupted,
    pending_calls,
)
from backend.tools.prompting import (
    TOOLS_SENTENCE,
    ToolPrompt,
    build_tool_prompt,
    observation_role,
    template_accepts_tools,
)


def call(name: str, **arguments) -> str:
    return json.dumps({"name": name, "arguments": arguments})


class ScriptedModel:
    """A deterministic stand-in: returns its replies in order and records what it was shown."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.seen: list[list[dict]] = []

    def __call__(self, history):
        self.seen.append(copy.deepcopy(history))
        if not self.replies:
            raise AssertionError("the loop asked the model for more turns than scripted")
        reply = self.replies.pop(0)
        return reply(history) if callable(reply) else reply


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def roles(history):
    return [e["role"] for e in history]


@pytest.fixture
def registry():
    return builtin_registry()


def test_call_observation_answer(registry):
    model = ScriptedModel(call("calculator", expression="6 * 7"), "It is 42.")
    history = ask("What is 6 times 7?")
    outcome = ToolLoop(model, registry).run(history)
    assert outcome.status == ANSWERED and outcome.rounds == 1
    assert roles(history) == ["user", "assistant", "tool", "assistant"]
    assert history[1]["calls"] == [{"name": "calculator", "arguments": {"expression": "6 * 7"},
                                    "error": None}]
    assert history[2]["content"] == "42" and history[2]["name"] == "calculator"
    assert history[2]["tool_result"]["status"] == "ok"
    assert history[2]["tool_result"]["elapsed_s"] >= 0
    assert model.seen[1][-1]["content"] == "42"  # the model saw the observation
    assert history[-1]["content"] == "It is 42."


def test_observation_role_follows_the_template(registry):
    model = ScriptedModel(call("calculator", expression="1+1"), "2")
    history = ask("1+1?")
    ToolLoop(model, registry, observation_role="observation").run(history)
    assert roles(history) == ["user", "assistant", "observation", "assistant"]


def test_several_calls_in_one_reply_run_in_order(registry):
    reply = ("<tool_call>\n" + call("calculator", expression="2**8") + "\n</tool_call>\n"
             "<tool_call>\n" + json.dumps({"name": "convert_units", "arguments": json.dumps(
                 {"value": 1, "from_unit": "km", "to_unit": "m"})}) + "\n</tool_call>")
    model = ScriptedModel(reply, "256 and 1000 m")
    history = ask("two things")
    outcome = ToolLoop(model, registry).run(history)
    assert outcome.status == ANSWERED and outcome.rounds == 1
    assert [e.get("content") for e in history[2:4]] == ["256", "1000"]


def test_bad_arguments_and_unknown_tools_go_back_to_the_model(registry):
    model = ScriptedModel(
        call("calculator", expr="1+1"),
        call("weather", city="Paris"),
        'calculator\n```python\ntool_call(expression="1+1")\n```',
        "2",
    )
    history = ask("1+1 please")
    outcome = ToolLoop(model, registry).run(history)
    assert outcome.status == ANSWERED and outcome.rounds == 3
    results = [e["tool_result"] for e in history if "tool_result" in e]
    assert [r["status"] for r in results] == ["bad_arguments", "unknown_tool", "ok"]
    assert "missing required argument 'expression'" in results[0]["observation"]
    assert "no tool named 'weather'" in results[1]["observation"]
    assert results[2]["output"] == "2"


def test_round_limit_stops_clearly(registry):
    model = ScriptedModel(*[call("calculator", expression="1+1")] * 4)
    history = ask("loop forever")
    outcome = ToolLoop(model, registry, max_rounds=3).run(history)
    assert outcome.status == MAX_ROUNDS and outcome.rounds == 3
    assert "Stopped after 3 tool round(s)" in outcome.message
    assert len(model.seen) == 4
    assert sum("tool_result" in e for e in history) == 3
    assert history[-1]["calls_not_run"][0]["name"] == "calculator"
    assert pending_calls(history) == []


def test_stop_between_turns(registry):
    stop = threading.Event()
    model = ScriptedModel(call("calculator", expression="3*3"), "never asked")
    hooks = LoopHooks(should_stop=stop.is_set, on_observation=lambda entry: stop.set())
    history = ask("9?")
    outcome = ToolLoop(model, registry, hooks=hooks).run(history)
    assert outcome.status == STOPPED_BY_USER
    assert len(model.seen) == 1 and history[-1]["content"] == "9"


def test_stop_while_a_tool_runs(registry):
    gate = threading.Event()

    def slow(seconds: float) -> str:
        """Sleep.

        Args:
            seconds: how long
        """
        gate.wait(seconds)
        return "done"

    registry.register(slow)
    stopped_at = time.perf_counter() + 0.3
    waits: list[str] = []
    hooks = LoopHooks(should_stop=lambda: time.perf_counter() > stopped_at,
                      on_wait=lambda c, s: waits.append(c.name))
    history = ask("slow")
    outcome = ToolLoop(ScriptedModel(call("slow", seconds=30)), registry, hooks=hooks).run(history)
    gate.set()
    assert outcome.status == STOPPED_BY_USER
    assert history[-1]["tool_result"]["status"] == "stopped" and waits and waits[0] == "slow"


def test_a_hanging_tool_times_out_and_the_loop_goes_on(registry):
    gate = threading.Event()

    def hang() -> str:
        """Never returns in time."""
        gate.wait(30)
        return "late"

    registry.register(hang)
    model = ScriptedModel(call("hang"), "It did not answer in time.")
    history = ask("hang")
    outcome = ToolLoop(model, registry, timeout_s=0.3).run(history)
    gate.set()
    assert outcome.status == ANSWERED
    assert history[2]["tool_result"]["status"] == "timeout"
    assert "did not finish within 0.3 s" in model.seen[1][-1]["content"]


def test_huge_result_is_cut_for_the_model_only(registry):
    def dump() -> str:
        """Ten megabytes."""
        return "y" * 10_000_000

    registry.register(dump)
    model = ScriptedModel(call("dump"), "ok")
    history = ask("dump")
    ToolLoop(model, registry, max_observation_chars=1000).run(history)
    assert len(history[2]["content"]) < 1200 and "truncated" in history[2]["content"]
    assert len(history[2]["tool_result"]["output"]) == 10_000_000
    assert len(model.seen[1][-1]["content"]) < 1200


def test_manual_mode_pauses_for_the_users_observation(registry):
    manual = registry.with_schemas([
        {"name": "get_current_weather", "description": "Weather",
         "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                        "required": ["location"]}},
        {"name": "calculator", "description": "math",
         "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}},
    ])
    model = ScriptedModel(
        call("get_current_weather", location="北京") + "\n" + call("calculator", expression="2"),
        "It is 22 degrees in Beijing.")
    typed: dict[str, str] = {}
    loop = ToolLoop(model, manual, hooks=LoopHooks(observe=lambda c, key: typed.get(key)))
    history = ask("北京天气?")
    outcome = loop.run(history)
    assert outcome.status == NEEDS_OBSERVATION and outcome.paused
    assert [p.call.name for p in outcome.pending] == ["get_current_weather", "calculator"]
    key = outcome.pending[0].key
    assert len(model.seen) == 1
    typed[key] = '{"temperature": 22}'
    outcome = loop.run(history)  # resume: the typed result, then the Python tool, then the model
    assert outcome.status == ANSWERED
    results = [e["tool_result"] for e in history if "tool_result" in e]
    assert [(r["name"], r["status"], r["output"]) for r in results] == [
        ("get_current_weather", "manual", '{"temperature": 22}'), ("calculator", "ok", "2")]
    assert history[-1]["content"] == "It is 22 degrees in Beijing."


def test_shell_calls_need_consent(tmp_path):
    registry = builtin_registry(include_shell=True)
    marker = tmp_path / "ran"
    decisions: dict[str, bool] = {}
    model = ScriptedModel(call("run_shell_command", command=f"touch {marker} && echo made"),
                          "Made it.", call("run_shell_command", command="echo again"), "No.")
    loop = ToolLoop(model, registry, hooks=LoopHooks(confirm=lambda c, key: decisions.get(key)))
    history = ask("make a file")
    outcome = loop.run(history)
    assert outcome.status == NEEDS_CONFIRMATION and not marker.exists()
    decisions[outcome.pending[0].key] = True
    assert loop.run(history).status == ANSWERED
    assert marker.exists() and history[2]["tool_result"]["output"] == "exit code 0\nmade\n"
    history.append({"role": "user", "content": "again"})
    outcome = loop.run(history)
    assert outcome.status == NEEDS_CONFIRMATION
    decisions[outcome.pending[0].key] = False
    assert loop.run(history).status == ANSWERED
    assert history[-2]["tool_result"]["status"] == "declined"
    # without a confirm hook a call needing consent is declined, never run
    silent = ToolLoop(ScriptedModel(call("run_shell_command", command=f"rm {marker}"), "ok"),
                      registry)
    silent.run(ask("remove it"))
    assert marker.exists()
    assert run_shell_command  # the tool itself is importable, it is just not offered by default


def test_hostile_call_does_not_run(tmp_path, registry):
    target = tmp_path / "pwned"
    model = ScriptedModel(
        f'calculator\n```python\ntool_call(x=__import__("os").system("touch {target}"))\n```',
        call("calculator", expression=f"__import__('os').system('touch {target}')"),
        "I cannot.")
    history = ask("hack")
    outcome = ToolLoop(model, registry).run(history)
    assert outcome.status == ANSWERED
    statuses = [e["tool_result"]["status"] for e in history if "tool_result" in e]
    assert statuses == ["malformed", "error"]
    assert not target.exists()


def test_failed_and_stopped_turns(registry):
    failed = ToolLoop(ScriptedModel(TurnReply("", failed="too long")), registry).run(ask("x"))
    assert failed.status == FAILED and failed.message == "too long"
    history = ask("x")
    outcome = ToolLoop(ScriptedModel(TurnReply(call("calculator", expression="1"), stopped=True)),
                       registry).run(history)
    assert outcome.status == STOPPED_BY_USER
    assert history[-1]["stopped"] and "calls" not in history[-1]  # a cut reply's call is not run


def test_a_new_message_abandons_a_paused_call_and_interrupted_calls_are_closed(registry):
    manual = registry.with_schemas([{"name": "typed", "description": "d"}])
    history = ask("a")
    outcome = ToolLoop(ScriptedModel(call("typed")), manual).run(history)
    assert outcome.status == NEEDS_OBSERVATION and len(pending_calls(history)) == 1
    assert close_interrupted(history, "tool") == 1 and pending_calls(history) == []
    assert history[-1]["tool_result"]["status"] == "stopped"
    history.extend(ask("b"))
    model = ScriptedModel(call("typed"), "x")
    ToolLoop(model, manual).run(history)
    history.extend(ask("c"))
    assert pending_calls(history) == []


# -- prompting, on the real tokenizer -----------------------------------------------------------

TOOLS_TEMPLATE = (
    "{% if tools %}<|system|>TOOLS {{ tools | tojson }}\n{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
STRICT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role') }}{% endif %}{{ m['role'] }}: {{ m['content'] }}\n"
    "{% endfor %}"
)


def with_template(tokenizer, template):
    clone = copy.deepcopy(tokenizer)
    clone.chat_template = template
    return clone


def test_smollm2_template_ignores_tools_so_the_system_prompt_lists_them(engine, registry):
    tokenizer = engine.loaded.tokenizer
    assert not template_accepts_tools(tokenizer)
    assert observation_role(tokenizer) == "tool"
    prompt = build_tool_prompt(tokenizer, registry.schemas(), "Be brief.")
    assert not prompt.via_template and prompt.template_tools() is None
    history = ask("hi") + [{"role": "assistant", "content": call("calculator", expression="1")},
                           {"role": "tool", "name": "calculator", "content": "1",
                            "tool_result": {}}]
    messages = prompt.messages(history)
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith(TOOLS_SENTENCE + "\n[{\"name\": \"calculator\"")
    assert messages[0]["content"].endswith("Be brief.")
    text = render_prompt(tokenizer, messages)
    assert TOOLS_SENTENCE in text and "<|im_start|>tool\n1<|im_end|>" in text


def test_templates_that_take_tools_get_them(engine, registry):
    tokenizer = with_template(engine.loaded.tokenizer, TOOLS_TEMPLATE + "{# observation #}")
    assert template_accepts_tools(tokenizer)
    assert observation_role(tokenizer) == "observation"
    prompt = build_tool_prompt(tokenizer, registry.schemas())
    assert prompt.via_template and TOOLS_SENTENCE not in prompt.system_text()
    assert prompt.template_tools()[0]["function"]["name"] == "calculator"
    text = render_prompt(tokenizer, prompt.messages(ask("hi")), prompt.template_tools())
    assert text.startswith("<|system|>TOOLS [") and '"calculator"' in text


def test_templates_without_a_tool_role_get_observations_as_user_text(engine):
    strict = with_template(engine.loaded.tokenizer, STRICT_TEMPLATE)
    assert observation_role(strict) == "user"
    prompt = ToolPrompt([], False, "user")
    messages = prompt.messages([{"role": "tool", "name": "calc", "content": "4",
                                 "tool_result": {}}])
    assert messages == [{"role": "user", "content": "Observation from calc: 4"}]
    plain = with_template(engine.loaded.tokenizer, None)
    assert not template_accepts_tools(plain) and observation_role(plain) == "tool"


# -- the real embedded model --------------------------------------------------------------------

def real_loop(engine, registry, max_new_tokens=40, max_rounds=1):
    registry = registry.subset(["calculator", "current_datetime"])  # a shorter prompt: faster
    prompt = build_tool_prompt(engine.loaded.tokenizer, registry.schemas())
    settings = SamplingSettings(temperature=0.0, top_p=0.7, max_new_tokens=max_new_tokens)
    return ToolLoop(engine_turn(engine, settings, prompt), registry, prompt.observation_role,
                    max_rounds=max_rounds)


def ends_cleanly(history, outcome):
    assert outcome.status in (ANSWERED, MAX_ROUNDS), outcome
    assert history[-1]["role"] == "assistant" and history[-1]["stats"]["new_tokens"] > 0
    assert pending_calls(history) == []


def test_real_model_plain_question_ends_cleanly(engine, registry):
    history = ask("What is 12 times 7?")
    outcome = real_loop(engine, registry, max_new_tokens=32).run(history)
    ends_cleanly(history, outcome)


def test_real_model_call_runs_the_tool_and_continues(engine, registry):
    # SmolLM2-135M rarely decides to call a tool on its own; asked to repeat a call, it does.
    history = ask('Repeat after me: {"name": "calculator", "arguments": {"expression": "12*7"}}')
    outcome = real_loop(engine, registry).run(history)
    ends_cleanly(history, outcome)
    assert history[1]["calls"][0]["name"] == "calculator"
    assert history[2]["role"] == "tool" and history[2]["content"] == "84"
    assert len([e for e in history if e["role"] == "assistant"]) == 2
