"""End to end in a real headless Chromium: `streamlit run app.py`, a question, a streamed answer."""

from __future__ import annotations

import time

from conftest import wait_until

INPUT = '[data-testid="stChatInputTextArea"]'
MESSAGE = '[data-testid="stChatMessage"]'


def ask(page, text: str) -> None:
    box = page.locator(INPUT)
    wait_until(lambda: box.is_visible() and box.is_enabled(), 120, 0.2, "the chat input")
    box.fill(text)
    box.press("Enter")


def choose_preset(page, name: str) -> None:
    box = page.get_by_role("combobox", name="Preset")
    box.click()
    page.get_by_role("option", name=name).click()
    wait_until(lambda: box.input_value() == name, 30, 0.1, f"preset {name}")


def slider_value(page, label: str) -> float:
    return float(page.get_by_role("slider", name=label).input_value())


def test_question_gets_a_streamed_answer(page, tmp_path):
    choose_preset(page, "Tool calling")  # temperature 0: greedy, so the answer is known
    wait_until(lambda: slider_value(page, "Temperature") == 0.0, 30, 0.1, "temperature 0")
    ask(page, "What is the capital of France?")
    states: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        messages = page.locator(MESSAGE)
        if messages.count() >= 2:
            text = messages.nth(1).inner_text()
            if not states or states[-1] != text:
                states.append(text)
            if "tokens/s" in text:
                break
        time.sleep(0.02)
    final = states[-1]
    assert "Paris" in final and "tokens/s" in final
    partial = [s for s in states if "▌" in s]  # the cursor marks a reply still streaming
    assert len(partial) >= 2, states
    page.screenshot(path=str(tmp_path / "chat.png"))


def test_stop_keeps_the_partial_reply(page):
    page.get_by_text("Max new tokens").wait_for()
    ask(page, "Write a very long story about a dragon and a knight, with many chapters.")
    stop = page.get_by_role("button", name="Stop")
    stop.wait_for(timeout=60_000)
    messages = page.locator(MESSAGE)
    wait_until(lambda: messages.count() >= 2 and len(messages.nth(1).inner_text()) > 80, 60,
               0.05, "some streamed text")
    stop.click()
    wait_until(lambda: "stopped" in messages.nth(1).inner_text(), 30, 0.1, "the stopped reply")
    reply = messages.nth(1).inner_text()
    assert "tokens/s" in reply
    tokens = int(reply.split("tokens ·")[0].split()[-1])
    assert 0 < tokens < 500  # it stopped well before max_new_tokens (512)
    assert page.get_by_role("button", name="Stop").count() == 0


def test_two_sessions_queue_on_the_shared_model(browser, app_server):
    """Each session keeps its own history; the second waits (and says so) while the first runs."""
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        first, second = (ctx.new_page() for ctx in contexts)
        for pg in (first, second):
            pg.set_default_timeout(60_000)
            pg.goto(app_server)
        ask(first, "Write a very long story about a dragon and a knight, with many chapters.")
        first.get_by_role("button", name="Stop").wait_for()
        ask(second, "What is the capital of France?")
        second.get_by_text("Waiting for another session's generation").wait_for(timeout=60_000)
        first.get_by_role("button", name="Stop").click()
        messages = second.locator(MESSAGE)
        wait_until(lambda: messages.count() >= 2 and "tokens/s" in messages.nth(1).inner_text(),
                   120, 0.1, "the second session's reply")
        assert "dragon" not in second.locator(MESSAGE).nth(0).inner_text()
        assert "France" not in first.locator(MESSAGE).nth(0).inner_text()
    finally:
        for ctx in contexts:
            ctx.close()
