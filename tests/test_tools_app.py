"""AppTest of Tool mode on the real embedded model: controls, separate history, a tool call in an
expander, manual mode (tool list editor, typed observation) and the shell tool's consent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
REPEAT_CALL = ('Repeat after me: {"name": "calculator", "arguments": {"expression": "12*7"}}')


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_TOOLS_DIR", str(tmp_path / "tools"))
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.sidebar.radio(key="mode").set_value("Tool").run()
    assert not at.exception, at.exception
    at.slider(key="max_new_tokens").set_value(32)
    at.number_input(key="tool_max_rounds").set_value(1)
    at.multiselect(key="tool_enabled").set_value(["calculator"])  # a short prompt is faster
    at.run()
    assert not at.exception, at.exception
    return at


def tool_messages(at):
    return [m for m in at.chat_message if m.name == "tool"]


def expander_labels(at):
    return [e.label for m in tool_messages(at) for e in m.expander]


def codes(at):
    return [c.value for m in tool_messages(at) for c in m.code]


def test_tool_mode_controls_and_its_own_history(app):
    assert app.number_input(key="tool_max_rounds").value == 1
    offered = app.multiselect(key="tool_enabled")
    assert offered.options == ["calculator", "random_number_generator", "current_datetime",
                               "convert_units"]  # no shell tool unless enabled
    assert not app.checkbox(key="tool_shell").value
    assert app.chat_input(key="tool_input") is not None
    assert not any("not available yet" in i.value for i in app.info)
    # Chat mode's history is kept apart and survives the switch
    app.session_state["histories"]["chat"] = [{"role": "user", "content": "hello from chat"}]
    app.run()
    assert not any("hello from chat" in m.value for m in app.markdown)
    app.sidebar.radio(key="mode").set_value("Chat").run()
    assert any("hello from chat" in m.value for m in app.markdown)
    app.sidebar.radio(key="mode").set_value("Tool").run()
    assert app.session_state["histories"]["chat"][0]["content"] == "hello from chat"
    # Tool mode's settings survive the trip through Chat mode (which does not draw them)
    assert app.number_input(key="tool_max_rounds").value == 1
    assert app.multiselect(key="tool_enabled").value == ["calculator"]


def test_a_tool_call_shows_in_an_expander(app):
    app.chat_input(key="tool_input").set_value(REPEAT_CALL).run()
    assert not app.exception, app.exception
    history = app.session_state["histories"]["tool"]
    assert history[1]["calls"][0]["name"] == "calculator"
    labels = expander_labels(app)
    assert labels and labels[0].startswith("calculator · done · ")
    assert '{\n  "expression": "12*7"\n}' in codes(app) and "84" in codes(app)
    assert history[-1]["role"] == "assistant"
    if history[-1].get("calls_not_run"):  # the model asked again: the round limit says so
        assert any("Stopped after 1 tool round(s)" in w.value for w in app.warning)
    assert app.session_state["histories"].get("chat", []) == []


def seed_pending(app, name, arguments):
    """The state right after the model called `name`: the loop waits for the user."""
    app.session_state["histories"]["tool"] = [
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": json.dumps({"name": name, "arguments": arguments}),
         "calls": [{"name": name, "arguments": arguments, "error": None}]},
    ]
    app.run()
    assert not app.exception, app.exception


def test_manual_mode_edits_the_tool_list_and_takes_a_typed_observation(app):
    app.toggle(key="tool_manual").set_value(True).run()
    editor = app.text_area(key="tool_list_text")
    assert "name: calculator" in editor.value  # starts from the offered tools, as YAML
    editor.set_value('[{"name": "broken",}').run()
    assert any("not valid" in e.value for e in app.error)
    assert app.chat_input(key="tool_input").disabled
    editor.set_value("- name: get_current_weather\n  description: Weather now\n  parameters:\n"
                     "    type: object\n    properties:\n      location: {type: string}\n"
                     "    required: [location]\n").run()
    assert not app.error and not app.chat_input(key="tool_input").disabled
    assert any("You type the result of: get_current_weather" in c.value for c in app.caption)
    seed_pending(app, "get_current_weather", {"location": "北京"})
    box = app.text_area(key="tool_obs_1:0")
    box.set_value('{"temperature": 22}')
    app.button(key="tool_obs_send_1:0").click().run()
    assert not app.exception, app.exception
    history = app.session_state["histories"]["tool"]
    assert history[2]["tool_result"]["status"] == "manual"
    assert history[2]["content"] == '{"temperature": 22}'
    assert history[-1]["role"] == "assistant" and len(history) >= 4
    assert any("get_current_weather · result typed by you" in label
               for label in expander_labels(app))


def test_shell_tool_asks_before_every_command(app, tmp_path):
    app.checkbox(key="tool_shell").check().run()
    marker = tmp_path / "made-by-shell"
    seed_pending(app, "run_shell_command", {"command": f"touch {marker} && echo made"})
    assert any("Run it?" in w.value for w in app.warning)
    assert not marker.exists()
    app.button(key="tool_confirm_1:0").click().run()
    assert not app.exception, app.exception
    assert marker.exists()
    assert "exit code 0\nmade" in codes(app)
    seed_pending(app, "run_shell_command", {"command": f"rm {marker}"})
    app.button(key="tool_decline_1:0").click().run()
    assert marker.exists()
    assert any("declined by you" in label for label in expander_labels(app))


HUGE_TOOL = '''
def huge_report() -> str:
    """Return ten megabytes of text."""
    return "hello world\\n" * 833_333 + "end\\n"
'''


def test_a_10_mb_result_is_cut_for_the_model_and_whole_in_the_page(app, tmp_path):
    folder = tmp_path / "tools"  # the fixture's WORKBENCH_TOOLS_DIR
    folder.mkdir()
    (folder / "huge.py").write_text(HUGE_TOOL)
    app.run()
    assert "huge_report" in app.multiselect(key="tool_enabled").options
    app.multiselect(key="tool_enabled").set_value(["calculator", "huge_report"])
    seed_pending(app, "huge_report", {})
    app.button(key="tool_resume_1:0").click().run()
    assert not app.exception, app.exception
    entry = app.session_state["histories"]["tool"][2]
    output = entry["tool_result"]["output"]
    assert len(output) == 10_000_000 and output.endswith("end\n")  # whole, for the page
    assert len(entry["content"]) < 5_000 and "truncated" in entry["content"]
    assert any("first 200,000 of 10,000,000 characters" in c.value for c in app.caption)
    download = [b for b in app.get("download_button") if "whole result" in b.proto.label]
    assert len(download) == 1


def test_a_message_too_long_for_the_context_is_refused_clearly(app):
    app.chat_input(key="tool_input").set_value("word " * 9000).run()
    assert not app.exception, app.exception
    assert app.session_state["histories"]["tool"] == []
    assert any("was not sent" in w.value and "context" in w.value for w in app.warning)
