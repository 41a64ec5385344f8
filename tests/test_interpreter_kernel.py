"""KernelSession on a real ipykernel: outputs in order, plots, errors, timeouts, deaths, limits."""

from __future__ import annotations

import time

import pytest
from conftest import wait_until

from backend.interpreter import KernelSession
from backend.interpreter.kernel import kernel_env


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    with KernelSession(tmp_path_factory.mktemp("work"), max_output_chars=10_000) as session:
        yield session


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A second kernel for the tests that kill or restart it."""
    with KernelSession(tmp_path_factory.mktemp("scratch"), memory_limit_mb=1500) as session:
        yield session


def kinds(result):
    return [out.kind for out in result.outputs]


def test_several_outputs_come_back_in_order(kernel):
    result = kernel.execute(
        "import matplotlib.pyplot as plt\n"
        "print('one'); print('two')\n"
        "plt.plot([1, 3, 2]); plt.show()\n"
        "import sys; print('warn', file=sys.stderr); sys.stderr.flush()\n"
        "print('three')\n"
        "6 * 7")
    assert result.status == "ok", result.outputs
    assert kinds(result) == ["stdout", "image", "stderr", "stdout", "result"]
    assert result.outputs[0].text == "one\ntwo\n"
    assert result.outputs[2].text == "warn\n"
    assert result.outputs[3].text == "three\n"
    assert result.outputs[4].text == "42"


def test_each_figure_is_a_png(kernel):
    result = kernel.execute(
        "import matplotlib.pyplot as plt\n"
        "for n in range(2):\n"
        "    plt.figure(); plt.bar(['a', 'b'], [n, 2]); plt.show()\n"
        "plt.figure(); plt.plot([0, 1])")  # left open: the inline backend shows it at the end
    images = [out for out in result.outputs if out.kind == "image"]
    assert len(images) == 3
    assert all(image.data.startswith(b"\x89PNG\r\n\x1a\n") and len(image.data) > 1000
               for image in images)


def test_error_has_a_plain_traceback(kernel):
    result = kernel.execute("def f():\n    return 1 / 0\nf()")
    assert result.status == "error"
    error = result.outputs[-1]
    assert error.kind == "error"
    assert "ZeroDivisionError" in error.text and "return 1 / 0" in error.text
    assert "\x1b[" not in error.text


def test_html_falls_back_to_plain_text_and_frames_carry_a_table(kernel):
    result = kernel.execute(
        "class Both:\n"
        "    def _repr_html_(self): return '<b>bold</b>'\n"
        "    def __repr__(self): return 'plain repr'\n"
        "from IPython.display import display\n"
        "display(Both())\n"
        "import pandas as pd\n"
        "pd.DataFrame({'city': ['Paris', 'Rome'], 'n': [1, 2]})")
    assert result.status == "ok"
    assert result.outputs[0].kind == "result" and result.outputs[0].text == "plain repr"
    frame = result.outputs[1]
    assert "Paris" in frame.text
    assert [row["city"] for row in frame.table["data"]] == ["Paris", "Rome"]


def test_timeout_interrupts_and_the_kernel_keeps_its_state(kernel):
    assert kernel.execute("kept = 41").status == "ok"
    started = time.monotonic()
    result = kernel.execute("print('before', flush=True)\nwhile True:\n    pass", timeout=1.5)
    assert result.status == "timeout"
    assert time.monotonic() - started < 8
    assert result.outputs[0].text == "before\n"
    assert "Timed out after 1.5 s" in result.outputs[-1].text
    assert "KeyboardInterrupt" not in "".join(out.text for out in result.outputs)
    after = kernel.execute("kept + 1")
    assert after.status == "ok" and after.outputs[0].text == "42"


def test_an_exception_in_on_progress_interrupts_the_cell(kernel):
    """The page's Stop works this way: its rerun exception surfaces in on_progress."""
    class Stop(Exception):
        pass

    def stop_after_half_a_second(elapsed, _outputs):
        if elapsed > 0.5:
            raise Stop

    started = time.monotonic()
    with pytest.raises(Stop):
        kernel.execute("import time\nstage = 1\ntime.sleep(30)\nstage = 2",
                       on_progress=stop_after_half_a_second)
    assert time.monotonic() - started < 8
    result = kernel.execute("stage")
    assert result.status == "ok" and result.outputs[0].text == "1"


def test_huge_output_is_truncated(kernel):
    started = time.monotonic()
    result = kernel.execute("print('x' * 50_000_000)\nfor i in range(200_000):\n    print(i)")
    assert time.monotonic() - started < 20
    assert result.status == "ok" and result.truncated
    text = "".join(out.text for out in result.outputs if out.kind == "stdout")
    assert 9_000 <= len(text) <= 10_000
    assert "output truncated" in result.outputs[-1].text
    big_value = kernel.execute("'y' * 50_000_000")
    assert big_value.truncated and len(big_value.outputs[0].text) <= 10_000
    assert kernel.execute("print('small')").outputs[0].text == "small\n"  # the cap is per cell


def test_no_output_leaks_into_the_next_cell(kernel):
    flag = kernel.workdir / "late.flag"
    kernel.execute(
        "import threading, time, sys\n"
        "def late():\n"
        "    time.sleep(0.3); print('late'); sys.stdout.flush(); open('late.flag', 'w').close()\n"
        "threading.Thread(target=late).start()")
    wait_until(flag.exists, 10, 0.05, "the background print")  # it prints between the cells
    result = kernel.execute("print('mine')")
    assert [out.text for out in result.outputs] == ["mine\n"]


def test_kernel_death_restarts_it(scratch):
    scratch.execute("lost = 1")
    pid = scratch.pid
    result = scratch.execute("import os\nos._exit(1)")
    assert result.status == "died"
    assert "exit code 1" in result.outputs[-1].text
    assert scratch.pid != pid and scratch.alive
    after = scratch.execute("lost")
    assert after.status == "error" and "NameError" in after.outputs[-1].text
    crash = scratch.execute("import ctypes\nctypes.string_at(0)")
    assert crash.status == "died" and "SIGSEGV" in crash.outputs[-1].text
    assert scratch.execute("1 + 1").outputs[0].text == "2"


def test_memory_limit_gives_memory_error(scratch):
    result = scratch.execute("block = bytearray(3 * 1024**3)")
    assert result.status == "error" and "MemoryError" in result.outputs[-1].text
    assert scratch.execute("'alive'").outputs[0].text == "'alive'"


def test_restart_clears_variables_keeps_files(scratch):
    scratch.execute("open('note.txt', 'w').write('kept'); gone = 1")
    scratch.restart()
    result = scratch.execute("open('note.txt').read(), 'gone' in globals()")
    assert result.outputs[0].text == "('kept', False)"


def test_two_sessions_are_isolated(kernel, scratch):
    kernel.execute("secret = 'only here'")
    result = scratch.execute("import os\nprint(os.getcwd())\nsecret")
    assert result.status == "error" and "NameError" in result.outputs[-1].text
    assert result.outputs[0].text.strip() == str(scratch.workdir)
    assert str(kernel.workdir) != str(scratch.workdir) and kernel.pid != scratch.pid


def test_kernel_environment_has_no_secrets(monkeypatch, kernel):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    env = kernel_env()
    assert "HF_TOKEN" not in env and env["MPLBACKEND"].endswith("backend_inline")
    result = kernel.execute("import os\n'HF_TOKEN' in os.environ, os.environ.get('MPLBACKEND')")
    assert result.outputs[0].text.startswith("(False, 'module://matplotlib_inline")
