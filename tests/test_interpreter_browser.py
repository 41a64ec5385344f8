"""End to end in headless Chromium: upload a CSV in Code Interpreter mode, plot it, see the plot.

The plot is made by code typed into the mode's "Python code" box (a user feature: it runs
in the session's kernel, the same one the model's code runs in). The tiny embedded model does not
write plotting code reliably, so the model is not what triggers the plot here.
"""

from __future__ import annotations

from conftest import wait_until

MESSAGE = '[data-testid="stChatMessage"]'
CSV = "month,sales\n1,10\n2,25\n3,17\n4,40\n"
CODE = """import pandas as pd
import matplotlib.pyplot as plt
df = pd.read_csv("sales.csv")
print("rows", len(df), "total", df["sales"].sum())
df.plot(x="month", y="sales", title="Sales")
plt.show()"""


def open_mode(page) -> None:
    # a click during the first run would cut the model's autoload short: wait for it
    page.get_by_text("SmolLM2-135M-Instruct").first.wait_for(timeout=120_000)
    page.get_by_text("Code Interpreter", exact=True).click()
    page.get_by_text("Files for the code").wait_for()


def test_uploaded_csv_is_plotted_in_the_chat(page, app_server, tmp_path):
    open_mode(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "sales.csv", "mimeType": "text/csv", "buffer": CSV.encode()}])
    page.get_by_text("sales.csv", exact=False).first.wait_for()
    wait_until(lambda: page.get_by_text("→").count() > 0 and "sales.csv" in
               page.get_by_text("→").first.inner_text(), 30, 0.2, "the saved-file caption")

    box = page.get_by_role("textbox", name="Python code")
    box.fill(CODE)
    box.press("Control+Enter")  # commit the text area's value
    page.get_by_role("button", name="Run code").click()

    messages = page.locator(MESSAGE)
    wait_until(lambda: messages.count() >= 1 and "rows 4 total 92" in messages.last.inner_text(),
               60, 0.2, "the printed summary")
    image = messages.last.locator("img")
    wait_until(lambda: image.count() >= 1 and image.first.evaluate(
        "img => img.complete && img.naturalWidth > 200"), 30, 0.2, "the plot image")
    response = page.request.get(app_server + image.first.get_attribute("src")
                                if image.first.get_attribute("src").startswith("/")
                                else image.first.get_attribute("src"))
    assert response.body()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.get_by_role("button", name="Stop").count() == 0  # the run is over
    page.screenshot(path=str(tmp_path / "interpreter.png"), full_page=True)


def test_bad_inputs_leave_the_page_working(page):
    open_mode(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "empty.txt", "mimeType": "text/plain", "buffer": b""}])
    wait_until(lambda: page.get_by_text("is empty (0 bytes)").count() > 0, 30, 0.2,
               "the empty-upload message")
    box = page.get_by_role("textbox", name="Python code")

    def run(code: str) -> None:
        box.fill(code)
        box.press("Control+Enter")
        page.get_by_role("button", name="Run code").click()

    def last_message_has(text: str) -> None:
        wait_until(lambda: text in page.locator(MESSAGE).last.inner_text(), 60, 0.2, text)

    run("import os\nos._exit(1)")
    last_message_has("kernel died")
    run("import time\nkept = 21\nwhile True:\n    time.sleep(0.05)")  # an endless loop
    last_message_has("Running…")
    page.get_by_role("button", name="Stop").click()
    last_message_has("Stopped.")
    run("print('after the crash and the loop:', kept * 2)")
    last_message_has("after the crash and the loop: 42")
    assert page.locator('[data-testid="stException"]').count() == 0


def test_stop_during_a_reply_keeps_it_and_frees_the_model(page):
    open_mode(page)
    box = page.locator('[data-testid="stChatInputTextArea"]')

    def ask(text: str) -> None:
        wait_until(lambda: box.is_enabled(), 60, 0.2, "the chat input")
        box.fill(text)
        box.press("Enter")

    ask("Write a very long story about a dragon and a knight, with many chapters.")
    stop = page.get_by_role("button", name="Stop")
    stop.wait_for()
    messages = page.locator(MESSAGE)
    wait_until(lambda: messages.count() >= 2 and len(messages.nth(1).inner_text()) > 60, 60,
               0.05, "some streamed text")
    stop.click()
    wait_until(lambda: "stopped" in messages.nth(1).inner_text(), 30, 0.1, "the stopped reply")
    assert page.get_by_role("button", name="Stop").count() == 0
    ask("Say hello.")  # the model's slot was given back: a second reply comes
    wait_until(lambda: messages.count() >= 4 and "tokens/s" in messages.nth(3).inner_text(),
               120, 0.2, "the second reply")
    assert "Waiting for another session" not in page.content()
