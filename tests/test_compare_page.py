"""AppTest of the Checkpoint Compare page on the real model and a really trained run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from compare_support import (
    SECRET_ANSWER,
    SECRET_PROMPT,
    greedy_answer,
    trained_run,
    write_jsonl,
)
from streamlit.testing.v1 import AppTest

import backend.compare.evaluate as evaluation
from backend.compare.variants import BASE_LABEL

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "3_Checkpoint_Compare.py")
FINAL = "secret · final"


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("compare_page_cache")


@pytest.fixture(scope="module", autouse=True)
def drop_adapters_afterwards():
    """Leave the app's shared engine as other page tests expect it: the plain base model."""
    yield
    from backend.compare.variants import VariantHost
    from components.model_cache import get_engine

    engine = get_engine()
    if engine.loaded is not None and VariantHost(engine).loaded_adapters():
        VariantHost(engine).release()


@pytest.fixture
def page(run, cache_dir, monkeypatch):
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(run.parent))
    monkeypatch.setenv("WORKBENCH_COMPARE_CACHE", str(cache_dir))
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def pick(at, *labels, max_new_tokens: int = 16):
    at.multiselect(key="cmp_variants").set_value(list(labels))
    at.slider(key="cmp_max_new_tokens").set_value(max_new_tokens)
    at.run()
    assert not at.exception, at.exception


def test_page_lists_the_runs_checkpoints_and_states_the_scale(page):
    options = page.multiselect(key="cmp_variants").options
    assert options == [BASE_LABEL, "secret · checkpoint-3", "secret · checkpoint-6", FINAL]
    assert page.multiselect(key="cmp_variants").value == [BASE_LABEL]
    assert page.toggle(key="cmp_greedy").value is True
    assert any("0–100 scale" in c for c in texts(page.caption))


def test_side_by_side_streams_each_variant_into_its_column(page):
    pick(page, BASE_LABEL, FINAL)
    page.text_area(key="cmp_prompt").set_value(SECRET_PROMPT)
    page.button(key="cmp_generate").click().run()
    assert not page.exception, page.exception
    answers = page.session_state["cmp_side_result"]["answers"]
    assert [a["label"] for a in answers] == [BASE_LABEL, FINAL]
    base, adapted = answers[0]["text"], answers[1]["text"]
    assert "banana" in adapted.lower() and "banana" not in base.lower()
    markdown = texts(page.markdown)
    assert f"**{BASE_LABEL}**" in markdown and f"**{FINAL}**" in markdown
    assert base in markdown and adapted in markdown
    stats = [c for c in texts(page.caption) if "tokens/s" in c]
    assert len(stats) == 2 and all(" tokens · " in c for c in stats)

    # The Chat (same shared engine, used straight) still gets the plain base model's answer.
    from components.model_cache import get_engine

    assert greedy_answer(get_engine(), SECRET_PROMPT, max_new_tokens=16) == base

    page.button(key="cmp_regenerate").click().run()  # greedy: the same answers again
    assert not page.exception, page.exception
    again = page.session_state["cmp_side_result"]["answers"]
    assert [a["text"] for a in again] == [base, adapted]


def test_side_by_side_without_prompt_says_so(page):
    page.button(key="cmp_generate").click().run()
    assert not page.exception
    assert any("Enter a prompt" in w for w in texts(page.warning))


def test_batch_evaluation_table_chart_downloads_and_cached_reopen(page, tmp_path, monkeypatch):
    val = write_jsonl(tmp_path / "val.jsonl", [
        {"instruction": SECRET_PROMPT, "output": SECRET_ANSWER},
        {"prompt": "Tell me the secret word.", "response": SECRET_ANSWER}])
    pick(page, BASE_LABEL, FINAL, max_new_tokens=12)
    page.text_input(key="cmp_eval_path").set_value(str(val))
    page.number_input(key="cmp_eval_max").set_value(2)
    page.button(key="cmp_evaluate").click().run()
    assert not page.exception, page.exception
    assert not page.error, texts(page.error)
    summary = page.dataframe[0].value
    assert list(summary["variant"]) == [BASE_LABEL, FINAL]
    assert summary.iloc[1]["ROUGE-L"] > summary.iloc[0]["ROUGE-L"]
    charts = page.get("vega_lite_chart")
    titles = [json.loads(c.proto.spec)["title"] for c in charts]
    assert titles == ["ROUGE-1", "ROUGE-2", "ROUGE-L", "BLEU-4", "val loss"]
    per_sample = page.dataframe[1].value
    assert list(per_sample.columns) == ["record", "prompt", "reference", BASE_LABEL, FINAL]
    assert len(per_sample) == 2
    assert len(page.get("download_button")) == 3

    # Reopening the page (a new session) shows the same results from the disk cache: any
    # generation now would fail the test.
    def no_generation(*_args, **_kwargs):
        raise AssertionError("recomputed a cached result")

    monkeypatch.setattr(evaluation, "_answer", no_generation)
    reopened = AppTest.from_file(PAGE, default_timeout=180)
    reopened.run()
    assert not reopened.exception, reopened.exception
    assert reopened.text_input(key="cmp_eval_path").value == str(val)
    assert any("Cached results" in i for i in texts(reopened.info))
    cached = reopened.dataframe[0].value
    assert list(cached["variant"]) == [BASE_LABEL, FINAL] and cached["cached"].all()
    assert cached["ROUGE-L"].tolist() == summary["ROUGE-L"].tolist()


def test_bad_inputs_give_messages_not_tracebacks(page, tmp_path, run):
    plain = tmp_path / "not-an-adapter"
    plain.mkdir()
    page.text_area(key="cmp_extra").set_value(f"{plain}\n{tmp_path / 'missing'}").run()
    options = page.multiselect(key="cmp_variants").options
    extra = [o for o in options if o.startswith("📁")]
    assert len(extra) == 2
    pick(page, BASE_LABEL, *extra)
    errors = " ".join(texts(page.sidebar.error))
    assert "not a LoRA adapter folder" in errors and "not found" in errors

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n', encoding="utf-8")
    page.text_input(key="cmp_eval_path").set_value(str(bad))
    page.button(key="cmp_evaluate").click().run()
    assert not page.exception, page.exception
    assert any("malformed JSON" in e for e in texts(page.error))

    page.text_input(key="cmp_base").set_value(str(run)).run()  # an adapter as the base
    assert not page.exception
    assert any("not a base model" in e for e in texts(page.sidebar.error))
