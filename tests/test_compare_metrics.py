"""The comparison's metrics against values worked out by hand on fixed strings."""

from __future__ import annotations

import math

import pytest

from backend.compare import metrics


def test_english_is_split_into_words_and_punctuation():
    assert metrics.tokenize("Hello, world!") == ["Hello", ",", "world", "!"]
    assert metrics.tokenize("The secret word is banana.") == [
        "The", "secret", "word", "is", "banana", "."]


def test_chinese_is_segmented_with_jieba():
    assert metrics.tokenize("我爱北京天安门") == ["我", "爱", "北京", "天安门"]
    assert metrics.tokenize("我喜欢 Python 编程。") == ["我", "喜欢", "Python", "编程", "。"]


def test_english_scores_by_hand():
    # hyp: the cat is on the mat / ref: the cat sat on the mat (6 tokens each)
    s = metrics.score("the cat is on the mat", "the cat sat on the mat")
    assert s["rouge-1"] == pytest.approx(100 * 5 / 6)   # the×2, cat, on, mat
    assert s["rouge-2"] == pytest.approx(100 * 3 / 5)   # the cat, on the, the mat
    assert s["rouge-l"] == pytest.approx(100 * 5 / 6)   # LCS: the cat on the mat
    # n-gram precisions 5/6, 3/5, 1/4, and 0/3 smoothed (method 3) to 1/(2*3); no brevity penalty
    assert s["bleu-4"] == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25)


def test_short_english_hypothesis_gets_the_brevity_penalty():
    s = metrics.score("the cat", "the cat sat on the mat")
    assert s["rouge-1"] == pytest.approx(50.0)           # P 1, R 1/3
    assert s["rouge-2"] == pytest.approx(100 / 3)        # P 1, R 1/5
    assert s["rouge-l"] == pytest.approx(50.0)
    # precisions 1, 1, then empty 3- and 4-grams smoothed to 1/2 and 1/4; BP exp(1 - 6/2)
    assert s["bleu-4"] == pytest.approx(100 * math.exp(-2) * (0.5 * 0.25) ** 0.25)


def test_chinese_scores_by_hand():
    # hyp 我/爱/北京 against ref 我/爱/北京/天安门
    s = metrics.score("我爱北京", "我爱北京天安门")
    assert s["rouge-1"] == pytest.approx(100 * 6 / 7)    # P 1, R 3/4
    assert s["rouge-2"] == pytest.approx(80.0)           # P 1, R 2/3
    assert s["rouge-l"] == pytest.approx(100 * 6 / 7)
    # precisions 1, 1, 1, empty 4-grams smoothed to 1/2; BP exp(1 - 4/3)
    assert s["bleu-4"] == pytest.approx(100 * math.exp(-1 / 3) * 0.5 ** 0.25)


def test_chinese_partial_overlap_by_hand():
    # hyp 今天天气/很/好 against ref 今天天气/不错
    assert metrics.tokenize("今天天气很好") == ["今天天气", "很", "好"]
    s = metrics.score("今天天气很好", "今天天气不错")
    assert s["rouge-1"] == pytest.approx(40.0)           # P 1/3, R 1/2
    assert s["rouge-2"] == 0.0
    assert s["rouge-l"] == pytest.approx(40.0)
    # p1 1/3; zero counts smoothed in turn to 1/(2*2), 1/(4*1), 1/(8*1); hyp longer: BP 1
    assert s["bleu-4"] == pytest.approx(100 * (1 / 3 * 1 / 4 * 1 / 4 * 1 / 8) ** 0.25)


def test_edges_identical_empty_and_disjoint():
    same = metrics.score("The secret word is banana.", "The secret word is banana.")
    assert all(v == pytest.approx(100.0) for v in same.values())
    assert all(v == 100.0 for v in metrics.score("", "  ").values())
    assert all(v == 0.0 for v in metrics.score("", "some reference").values())
    assert all(v == 0.0 for v in metrics.score("apple pie", "banana split").values())
    assert set(same) == set(metrics.METRICS)


def test_rouge_counts_repeated_ngrams_only_as_often_as_the_reference_has_them():
    # "banana" ×4 in the hypothesis matches the reference's single "banana" once: P 1/4, R 1/1
    assert metrics.score("banana banana banana banana", "banana")["rouge-1"] == \
        pytest.approx(100 * 2 * 0.25 / 1.25)
