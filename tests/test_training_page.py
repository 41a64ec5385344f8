"""AppTest of the LoRA Training page: data check with preview, clear errors, and a run driven
from the page (Launch, Stop, Resume, Delete) on the embedded model."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import stop_active_runs, wait_until, write_jsonl
from streamlit.testing.v1 import AppTest

from backend.training import registry, run_files

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "2_LoRA_Training.py")
RECORDS = [
    {"conversations": [{"role": "user", "content": "Is <b>this</b> bold?"},
                       {"role": "assistant", "content": "No, it is escaped."}]},
    {"prompt": "Say the secret word.", "response": "The secret word is banana."},
    {"instruction": "What is the secret word?", "output": "The secret word is banana."},
]


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # runs are subprocesses; see test_training_run
    yield root
    stop_active_runs(root)  # never leave a run training after a failed test


@pytest.fixture
def good_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "good.jsonl", RECORDS)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    return wait_until(predicate, timeout, interval, what)


def open_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def use_path(at: AppTest, path: Path | str) -> None:
    at.radio(key="train_source").set_value("A file on this machine").run()
    at.text_input(key="train_data_path").input(str(path)).run()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def run_labels(at: AppTest) -> list[str]:
    """Run expanders' labels without the state badge: "<run id> · <state>"."""
    return [e.label.split(" ", 1)[1] for e in at.expander if " · " in e.label]


def test_check_shows_preview_and_bad_input_gives_clear_errors(runs_root, tmp_path, good_file):
    at = open_page()
    assert "No runs yet" in texts(at.info)
    at.button(key="train_check").click().run()
    assert "Choose a training data file first." in texts(at.error)

    use_path(at, good_file)
    at.button(key="train_check").click().run()
    assert not at.exception and not at.error
    assert "good.jsonl: 3 record(s)" in texts(at.success)
    previews = [m.value for m in at.markdown if "<pre" in m.value]
    assert len(previews) == 3
    assert "<mark" in previews[0] and "No, it is escaped.&lt;|im_end|&gt;" in previews[0]
    assert "Is &lt;b&gt;this&lt;/b&gt; bold?" in previews[0]  # user text is escaped, not HTML
    assert "<mark" not in previews[0].split("Is &lt;b&gt;")[1].split("assistant")[0]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"messages": [{"role": "user"}]}\n')
    at.text_input(key="train_data_path").input(str(bad)).run()
    at.button(key="train_launch").click().run()
    assert "bad.jsonl: record 2, line 2: message 1 (user) has no 'content'" in texts(at.error)
    assert "nothing was launched" in texts(at.error)
    assert registry.list_runs(runs_root) == []

    at.text_input(key="train_data_path").input(str(tmp_path / "missing.jsonl")).run()
    at.button(key="train_check").click().run()
    assert "Data file not found" in texts(at.error)

    at.text_input(key="train_data_path").input(str(good_file)).run()
    at.number_input(key="train_lora_dropout").set_value(1.5).run()
    at.button(key="train_launch").click().run()
    assert "lora_dropout must be in [0, 1)" in texts(at.error)
    at.number_input(key="train_lora_dropout").set_value(0.1)

    at.text_input(key="train_model").input(str(tmp_path / "no-model")).run()
    at.button(key="train_launch").click().run()
    assert "Base model folder not found" in texts(at.error)
    assert not at.exception and registry.list_runs(runs_root) == []


def test_a_runs_folder_that_cannot_be_written_gives_a_message(tmp_path, monkeypatch,
                                                              good_file):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(blocker / "runs"))
    at = open_page()
    use_path(at, good_file)
    at.button(key="train_launch").click().run()
    assert not at.exception
    assert "Cannot create a run folder in" in texts(at.error)


def test_launch_stop_resume_and_delete_from_the_page(runs_root, good_file):
    at = open_page()
    use_path(at, good_file)
    for key, value in (("train_max_steps", 500), ("train_save_steps", 200),
                       ("train_batch_size", 1), ("train_max_length", 128),
                       ("train_learning_rate", 1e-3)):
        at.number_input(key=key).set_value(value)
    at.button(key="train_launch").click().run()
    assert not at.exception
    assert "Launched run" in texts(at.success)
    runs = registry.list_runs(runs_root)
    assert len(runs) == 1
    run_dir, run_id = runs[0].path, runs[0].run_id
    wait_for(lambda: run_files.read_metrics(run_dir), 300, "the first step")

    at = open_page()  # a fresh session (page reload): the run is read from disk
    assert f"{run_id} · running" in run_labels(at)
    assert any("step" in (p.proto.text or "") for p in at.get("progress"))
    at.button(key=f"stop-{run_id}").click().run()
    assert "Stopping" in texts(at.info)
    wait_for(lambda: not registry.read_run(run_dir).active, 120, "the run to stop")
    run = registry.read_run(run_dir)
    assert run.state == "stopped" and run.checkpoints

    at.run()
    assert f"{run_id} · stopped" in run_labels(at)
    assert at.get("vega_lite_chart"), "the loss chart"
    codes = texts(at.code)
    assert "-m backend.training --model default --data" in codes
    assert "[train] SIGTERM received" in codes  # the log tail
    target = run.checkpoints[-1] + 1
    at.number_input(key=f"until-{run_id}").set_value(target)
    at.button(key=f"resume-{run_id}").click().run()
    assert "Resumed" in texts(at.info)
    wait_for(lambda: not registry.read_run(run_dir).active, 300, "the resumed run to end")
    run = registry.read_run(run_dir)
    assert run.state == "completed" and run.step == target

    at.run()
    assert f"{run_id} · completed" in run_labels(at)
    assert "--resume latest --max-steps" in texts(at.code)
    at.button(key=f"delete-{run_id}").click().run()
    at.button(key=f"delete-yes-{run_id}").click().run()
    assert not run_dir.exists()
    assert "No runs yet" in texts(at.info)
