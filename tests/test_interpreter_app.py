"""AppTest of the main page's Code Interpreter mode: real kernels, the real embedded model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")
CSV = b"x,y\n1,10\n2,20\n3,30\n"


@pytest.fixture
def app():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.radio(key="mode").set_value("Code Interpreter").run()
    assert not at.exception, at.exception
    yield at
    from components.interpreter_mode import get_pool

    get_pool().release(at.session_state["interpreter_key"])  # free the kernel slot


def history(at) -> list[dict]:
    return at.session_state["histories"]["interpreter"]


def run_code(at, code: str) -> None:
    at.text_area(key="interpreter_code").set_value(code)
    at.button(key="interpreter_run").click().run()
    assert not at.exception, at.exception


def workdir(at) -> Path:
    help_text = at.file_uploader(key="interpreter_files").help
    return Path(re.search(r"`([^`]+)`", help_text).group(1))


def test_mode_has_its_controls(app):
    labels = {b.label for b in app.button}
    assert {"Restart kernel", "Interrupt", "Clear chat", "Run code"} <= labels
    assert app.sidebar.number_input(key="interpreter_timeout").value == 60
    assert app.sidebar.number_input(key="interpreter_rounds").value == 5
    assert app.file_uploader(key="interpreter_files").accept_multiple_files
    assert "not available yet" not in " ".join(i.value for i in app.info)


def test_uploads_are_saved_safely_and_bad_ones_explained(app):
    app.file_uploader(key="interpreter_files").set_value([
        ("data.csv", CSV, "text/csv"),
        ("../../etc/passwd", b"root:x:0:0", "text/plain"),
        ("empty.txt", b"", "text/plain"),
        ("mes données.bin", bytes(range(256)), "application/octet-stream"),
    ]).run()
    assert not app.exception, app.exception
    folder = workdir(app)
    assert sorted(p.name for p in folder.iterdir()) == ["data.csv", "mes données.bin", "passwd"]
    assert (folder / "mes données.bin").read_bytes() == bytes(range(256))
    captions = " ".join(c.value for c in app.caption)
    assert "saved as `passwd`" in captions
    assert any("empty.txt" in w.value and "empty" in w.value for w in app.warning)


def test_run_code_shows_text_table_plot_and_written_files(app):
    app.file_uploader(key="interpreter_files").set_value([("data.csv", CSV, "text/csv")]).run()
    run_code(app, "import pandas as pd, matplotlib.pyplot as plt\n"
                  "df = pd.read_csv('data.csv')\n"
                  "print('total', df.y.sum())\n"
                  "df.plot(x='x', y='y'); plt.show()\n"
                  "df.to_csv('doubled.csv')\n"
                  "df * 2")
    entry = history(app)[-1]
    assert entry["kind"] == "code" and entry["status"] == "ok"
    assert [o.kind for o in entry["outputs"]] == ["stdout", "image", "result"]
    assert any(c.value.strip() == "total 60" for c in app.code)
    assert len(app.dataframe) == 1 and list(app.dataframe[0].value["y"]) == [20, 40, 60]
    assert len(app.get("image")) == 1
    assert any(e.label == "Files the code wrote (1)" for e in app.expander)
    assert any(d.label.startswith("doubled.csv ·") for d in app.get("download_button"))


def test_restart_timeout_and_death_are_reported(app):
    run_code(app, "kept = 1")
    app.button(key="interpreter_restart").click().run()
    assert any("restarted" in s.value for s in app.success)
    run_code(app, "kept")
    assert history(app)[-1]["status"] == "error"
    app.sidebar.number_input(key="interpreter_timeout").set_value(1.0).run()
    run_code(app, "while True:\n    pass")
    assert history(app)[-1]["status"] == "timeout"
    assert any("timed out" in w.value for w in app.warning)
    run_code(app, "import os\nos._exit(1)")
    assert history(app)[-1]["status"] == "died"
    run_code(app, "print('still here')")
    assert any(c.value.strip() == "still here" for c in app.code)


def test_chat_with_the_real_model_runs_its_code(app):
    app.sidebar.slider(key="max_new_tokens").set_value(32)
    app.sidebar.slider(key="temperature").set_value(0.0)
    app.sidebar.number_input(key="interpreter_rounds").set_value(2)
    app.file_uploader(key="interpreter_files").set_value([("data.csv", CSV, "text/csv")]).run()
    app.chat_input(key="interpreter_input").set_value(
        "Copy this code block exactly, nothing else:\n```python\nprint(2 ** 10)\n```").run()
    assert not app.exception, app.exception
    turns = history(app)
    user = turns[0]
    assert user["content"].startswith(f"#File: {workdir(app)}/data.csv\n#Size: {len(CSV)}\n"
                                      "#File uploaded\n")
    assert user["files"] == ["data.csv"]
    assert [t["role"] for t in turns[1:3]] == ["assistant", "observation"]
    assert "1024" in turns[2]["content"]
    assert not app.error
    names = [m.name for m in app.chat_message]
    assert names[:3] == ["user", "assistant", "result"]
