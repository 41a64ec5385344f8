"""Batch evaluation on a validation file: samples from every format, scores and loss per
variant, the on-disk cache, exports, and clear messages for bad files."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from compare_support import SECRET_ANSWER, SECRET_PROMPT, shared_engine, trained_run, write_jsonl

import backend.compare.evaluate as evaluation
from backend.compare.cache import ResultCache
from backend.compare.errors import CompareError
from backend.compare.evaluate import EvalSettings, evaluate
from backend.compare.samples import load_samples
from backend.compare.variants import BASE, VariantHost, variant_for
from backend.sampling import SamplingSettings

SETTINGS = EvalSettings(SamplingSettings(temperature=0.0, max_new_tokens=10), max_samples=2)
VALIDATION = [
    {"instruction": SECRET_PROMPT, "output": SECRET_ANSWER},
    {"conversations": [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": "Hi"},
                       {"role": "assistant", "content": "Hello!"},
                       {"role": "user", "content": "Tell me the secret word."},
                       {"role": "assistant", "content": SECRET_ANSWER}]},
    {"messages": [{"role": "user", "content": "secret?"},
                  {"role": "assistant", "content": SECRET_ANSWER}]},
    {"content": "类型#上衣*版型#宽松", "summary": "这件上衣很宽松。"},
]


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def host():
    return VariantHost(shared_engine())


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One results cache for the module: what one test computed, the next reuses."""
    return ResultCache(tmp_path_factory.mktemp("compare_cache"))


@pytest.fixture
def val_file(tmp_path):
    return write_jsonl(tmp_path / "val.jsonl", VALIDATION)


def test_samples_come_from_every_format_with_the_last_answer_as_reference(val_file):
    samples, digest = load_samples(val_file)
    assert len(samples) == 4 and len(digest) == 64
    assert [s.reference for s in samples] == [SECRET_ANSWER] * 3 + ["这件上衣很宽松。"]
    multi = samples[1]
    assert [t.role for t in multi.prompt_turns] == ["system", "user", "assistant", "user"]
    assert multi.prompt_text == "Tell me the secret word."
    assert load_samples(val_file, limit=2)[0] == samples[:2]


def test_evaluation_has_a_row_per_variant_and_the_adapter_scores_better(
        run, host, val_file, cache):
    seen = []
    final = variant_for(str(run))
    result = evaluate(host, [BASE, final], str(val_file), SETTINGS, cache,
                      progress=lambda f, m: seen.append((f, m)))
    summary = result.summary_frame()
    assert list(summary["variant"]) == [BASE.label, final.label]
    base_row, final_row = summary.iloc[0], summary.iloc[1]
    assert final_row["ROUGE-L"] > base_row["ROUGE-L"]
    assert final_row["BLEU-4"] > base_row["BLEU-4"]
    assert 0 <= base_row["ROUGE-1"] <= 100 and final_row["ROUGE-1"] == pytest.approx(100.0)
    assert 0 < final_row["val loss"] < base_row["val loss"]
    assert list(summary["samples"]) == [2, 2] and not summary["cached"].any()
    # progress: from 0 to 1, one step per (variant, sample)
    assert seen[0][0] == 0.0 and seen[-1][0] == 1.0
    assert sum("sample" in m for _, m in seen) == 4

    samples = result.samples_frame()
    assert list(samples.columns) == ["record", "prompt", "reference", BASE.label, final.label]
    assert len(samples) == 2 and "banana" in samples[final.label][0]

    long = pd.read_csv(io.StringIO(result.to_csv()))
    assert len(long) == 4 and {"ROUGE-1", "BLEU-4", "val loss", "output"} <= set(long.columns)
    exported = json.loads(result.to_json())
    assert [row["variant"] for row in exported["summary"]] == [BASE.label, final.label]
    assert "0-100" in exported["scale"] and len(exported["samples"]) == 2


def test_results_are_cached_per_variant_and_not_recomputed(run, host, val_file, cache,
                                                           monkeypatch):
    ck3, final = variant_for(str(run / "checkpoint-3")), variant_for(str(run))
    first = evaluate(host, [BASE, final], str(val_file), SETTINGS, cache)
    calls = []
    real = evaluation._answer
    monkeypatch.setattr(evaluation, "_answer", lambda *a, **k: calls.append(a[1]) or real(*a, **k))

    again = evaluate(host, [BASE, final], str(val_file), SETTINGS, cache)
    assert calls == [] and again.from_cache
    assert again.summary_frame()["ROUGE-L"].tolist() == first.summary_frame()["ROUGE-L"].tolist()
    # only the new variant is computed; cached ones are reused
    mixed = evaluate(host, [BASE, ck3, final], str(val_file), SETTINGS, cache)
    assert [v.label for v in calls] == [ck3.label] * 2
    assert [v.from_cache for v in mixed.variants] == [True, False, True]
    # other settings, another file content: not in the cache
    other = EvalSettings(SamplingSettings(temperature=0.0, max_new_tokens=11), max_samples=2)
    assert evaluate(host, [BASE], str(val_file), other, cache, only_cached=True) is None
    write_jsonl(val_file, VALIDATION[1:])
    assert evaluate(host, [BASE], str(val_file), SETTINGS, cache, only_cached=True) is None


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty"),
    ("   \n", "is empty"),
    ("[]", "is an empty list"),
    ('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output"\n',
     "line 2: malformed JSON"),
    ('[{"instruction": "a", "output": "b"},', "malformed JSON"),
    ('{"question": "a", "answer": "b"}\n', "unknown format"),
    ('{"messages": [{"role": "user", "content": "only a question"}]}\n', "no assistant turn"),
    ("\xff\xfe", "UTF-8"),
])
def test_bad_validation_files_give_clear_messages(tmp_path, host, content, message):
    path = tmp_path / "val.jsonl"
    path.write_bytes(content.encode("latin-1") if content == "\xff\xfe" else
                     content.encode("utf-8"))
    with pytest.raises(CompareError, match=message):
        evaluate(host, [BASE], str(path), SETTINGS, ResultCache(tmp_path / "cache"))


def test_missing_or_blank_validation_path(tmp_path, host):
    with pytest.raises(CompareError, match="not found"):
        evaluate(host, [BASE], str(tmp_path / "nope.jsonl"), SETTINGS)
    with pytest.raises(CompareError, match="Enter the path"):
        evaluate(host, [BASE], "  ", SETTINGS)
    with pytest.raises(CompareError, match="Not a file"):
        evaluate(host, [BASE], str(tmp_path), SETTINGS)
