"""Tool mode in a real headless Chromium: the model's tool call and its result in an expander.

How the call is triggered: SmolLM2-135M seldom decides to call a tool by itself, so the message
asks it to repeat a JSON call verbatim; with the tool-calling sampling (greedy) it does. Everything
after that is the real path: parse, schema check, calculator run, observation, next model turn.
"""

from __future__ import annotations

import time

import pytest
from conftest import running_app, wait_until

INPUT = '[data-testid="stChatInputTextArea"]'
MESSAGE = '[data-testid="stChatMessage"]'
EXPANDER = '[data-testid="stExpander"]'
REPEAT_CALL = 'Repeat after me: {"name": "calculator", "arguments": {"expression": "12*7"}}'


def settled(page, seconds: float = 1.0) -> bool:
    """The script is not running (Streamlit's own marker on the app root) for `seconds`."""
    app = page.locator('[data-testid="stApp"]')
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if app.get_attribute("data-test-script-state") != "notRunning":
            return False
        time.sleep(0.1)
    return True


def open_tool_mode(page) -> None:
    """Wait for the model, switch to Tool mode, allow one tool round."""
    box = page.locator(INPUT)
    # the first visit loads the model; a click before that would interrupt the load
    wait_until(lambda: box.is_visible() and box.is_enabled(), 180, 0.2, "the loaded model")
    page.locator('[data-testid="stSidebar"]').get_by_text("Tool", exact=True).click()
    rounds = page.get_by_role("spinbutton", name="Max tool rounds")
    rounds.wait_for()
    rounds.fill("1")
    rounds.press("Enter")
    wait_until(lambda: rounds.input_value() == "1" and settled(page), 60, 0.1, "the round limit")


def send(page, text: str) -> None:
    box = page.locator(INPUT)
    wait_until(lambda: box.is_visible() and box.is_enabled(), 120, 0.2, "the chat input")
    box.fill(text)
    box.press("Enter")


def test_tool_call_and_result_show_in_an_expander(page, tmp_path):
    open_tool_mode(page)
    send(page, REPEAT_CALL)

    expander = page.locator(MESSAGE).locator(EXPANDER).filter(has_text="calculator")
    wait_until(lambda: expander.count() > 0, 240, 0.2, "the tool call's expander")
    messages = page.locator(MESSAGE)
    wait_until(lambda: messages.count() >= 4 and settled(page), 240, 0.2,
               "the model's turn after the tool result")
    assert page.get_by_role("button", name="Stop").count() == 0
    assert expander.count() == 1
    label = expander.first.locator("summary").inner_text()
    assert "calculator" in label and "done" in label and " s" in label
    expander.first.locator("summary").click()
    body = expander.first
    wait_until(lambda: "Result" in body.inner_text(), 30, 0.1, "the expander's content")
    text = body.inner_text()
    assert '"expression": "12*7"' in text  # arguments
    assert "84" in text.split("Result", 1)[1]  # result
    assert "time taken" in text
    page.screenshot(path=str(tmp_path / "tool_mode.png"))
    last = messages.nth(3).inner_text()
    assert "tokens/s" in last
    if '"name": "calculator"' in last:  # it asked again: the round limit stops it, visibly
        assert "round limit reached" in last


SLOW_TOOL = '''
import time


def slow_tool(seconds: int) -> str:
    """Wait, then answer.

    Args:
        seconds: how long to wait
    """
    time.sleep(seconds)
    return "slept"
'''


@pytest.fixture(scope="module")
def slow_tool_server(tmp_path_factory):
    """A second app server whose user tools folder holds a tool that takes a minute."""
    folder = tmp_path_factory.mktemp("user-tools")
    (folder / "slow.py").write_text(SLOW_TOOL)
    with running_app(folder.parent / "streamlit-slow.log",
                     {"WORKBENCH_TOOLS_DIR": str(folder)}) as url:
        yield url


def test_stop_during_a_tool_run(browser, slow_tool_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(slow_tool_server)
        open_tool_mode(page)
        send(page, 'Repeat after me: {"name": "slow_tool", "arguments": {"seconds": 60}}')
        running = page.locator(MESSAGE).filter(has_text="Running slow_tool")
        wait_until(lambda: running.count() > 0, 240, 0.1, "the tool run")
        started = time.monotonic()
        running.get_by_role("button", name="Stop").click()
        expander = page.locator(MESSAGE).locator(EXPANDER).filter(has_text="slow_tool")
        wait_until(lambda: expander.count() > 0 and "stopped" in expander.first.inner_text(),
                   30, 0.1, "the stopped tool call")
        assert time.monotonic() - started < 30  # long before the tool's 60 s
        wait_until(lambda: settled(page), 30, 0.2, "a quiet page")
        assert page.locator(MESSAGE).filter(has_text="Running slow_tool").count() == 0
        box = page.locator(INPUT)
        assert box.is_enabled()  # the app keeps working
    finally:
        context.close()
