"""AppTest of the main page's Chat mode, on the real embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from backend import conversation

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture
def app():
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    at.slider(key="max_new_tokens").set_value(32)
    at.slider(key="temperature").set_value(0.0)
    at.run()
    return at


def assistant_messages(at):
    return [m for m in at.chat_message if m.name == "assistant"]


def send(at, text):
    at.chat_input(key="chat_input").set_value(text).run()
    assert not at.exception, at.exception


def test_sidebar_has_model_status_and_sampling_controls(app):
    keys = {s.key for s in app.sidebar.slider}
    assert {"temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens"} <= keys
    assert any("SmolLM2-135M-Instruct" in c.value for c in app.sidebar.caption)
    assert app.sidebar.text_area(key="system_prompt") is not None


def test_preset_sets_temperature_and_top_p(app):
    app.selectbox(key="preset").set_value("Code generation").run()
    assert app.slider(key="temperature").value == pytest.approx(0.2)
    assert app.slider(key="top_p").value == pytest.approx(0.1)
    app.selectbox(key="preset").set_value("Creative writing").run()
    assert (app.slider(key="temperature").value, app.slider(key="top_p").value) == (0.7, 0.8)


def test_chat_reply_with_stats_then_retry_and_clear(app):
    send(app, "What is the capital of France?")
    replies = assistant_messages(app)
    assert len(replies) == 1
    assert "Paris" in replies[0].markdown[0].value
    assert "tokens/s" in replies[0].caption[0].value
    first = replies[0].markdown[0].value

    app.button(key="chat_retry").click().run()
    assert not app.exception
    replies = assistant_messages(app)
    assert len(replies) == 1 and replies[0].markdown[0].value == first  # greedy: same again
    assert len(app.session_state["histories"]["chat"]) == 2

    app.button(key="chat_clear").click().run()
    assert app.session_state["histories"]["chat"] == []
    assert not app.chat_message


def test_system_prompt_and_export(app):
    app.text_area(key="system_prompt").set_value("You answer in one short sentence.").run()
    send(app, "Name a colour.")
    history = app.session_state["histories"]["chat"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    exported = json.loads(conversation.to_json(history, {"mode": "chat"}))
    assert exported["messages"][1]["content"] == history[1]["content"]
    markdown = conversation.to_markdown(history)
    assert "## User" in markdown and "Name a colour." in markdown
    assert len(app.get("download_button")) == 2


def test_empty_prompt_gets_a_message(app):
    send(app, "   ")
    assert any("empty" in w.value for w in app.warning)
    assert app.session_state["histories"]["chat"] == []


def test_huge_prompt_is_refused_and_history_kept(app):
    send(app, "Hello")
    before = list(app.session_state["histories"]["chat"])
    send(app, "x " * 60_000)  # about 120 KB
    assert app.session_state["histories"]["chat"] == before
    assert any("was not sent" in w.value for w in app.warning)


def test_bad_model_path_shows_an_error_and_chat_still_works(app, tmp_path):
    send(app, "Hi")
    app.text_input(key="model_path").set_value(str(tmp_path / "missing")).run()
    app.button(key="load_model").click().run()
    assert not app.exception
    assert any("not found" in e.value for e in app.sidebar.error)
    assert len(app.session_state["histories"]["chat"]) == 2
    send(app, "What is the capital of France?")
    assert len(assistant_messages(app)) == 2


def test_not_a_model_folder_and_remote_code_messages(app, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "chatglm",
                                                      "auto_map": {"AutoModel": "x.Y"}}))
    app.text_input(key="model_path").set_value(str(tmp_path)).run()
    app.button(key="load_model").click().run()
    assert any("Trust remote code" in e.value for e in app.sidebar.error)
    empty = tmp_path / "empty"
    empty.mkdir()
    app.text_input(key="model_path").set_value(str(empty)).run()
    app.button(key="load_model").click().run()
    assert any("no config.json" in e.value for e in app.sidebar.error)
    assert not app.exception


def test_switching_modes_keeps_the_chat_history(app):
    send(app, "Hi")
    app.radio(key="mode").set_value("Code Interpreter").run()
    assert not app.exception
    app.radio(key="mode").set_value("Chat").run()
    assert len(app.session_state["histories"]["chat"]) == 2
    assert len(app.chat_message) == 2
