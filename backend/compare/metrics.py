"""Scores of a generated answer against its reference, as the reference tools compute them.

ROUGE-1, ROUGE-2 and ROUGE-L are F1 scores (harmonic mean of precision and recall; n-gram
overlaps are clipped counts, ROUGE-L uses the longest common subsequence). BLEU-4 is nltk's
`sentence_bleu` with `SmoothingFunction().method3`. Every score is on a 0-100 scale.

Text containing Chinese characters is segmented with jieba (whitespace pieces dropped); other
text is split into words, punctuation marks being tokens of their own. Two empty texts score
100, an empty text against a non-empty one scores 0.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence

METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu-4")
METRIC_LABELS = {"rouge-1": "ROUGE-1", "rouge-2": "ROUGE-2", "rouge-l": "ROUGE-L",
                 "bleu-4": "BLEU-4"}
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """jieba segments for text with Chinese characters, else words and punctuation marks."""
    if _HAN.search(text):
        import jieba

        jieba.setLogLevel(logging.WARNING)
        return [piece for piece in jieba.lcut(text) if piece.strip()]
    return _WORD.findall(text)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _f1(overlap: int, hyp_total: int, ref_total: int) -> float:
    if overlap == 0 or hyp_total == 0 or ref_total == 0:
        return 0.0
    precision, recall = overlap / hyp_total, overlap / ref_total
    return 2 * precision * recall / (precision + recall)


def rouge_n(hyp: Sequence[str], ref: Sequence[str], n: int) -> float:
    """ROUGE-N F1 in [0, 1]."""
    hyp_grams, ref_grams = _ngrams(hyp, n), _ngrams(ref, n)
    overlap = sum((hyp_grams & ref_grams).values())
    return _f1(overlap, sum(hyp_grams.values()), sum(ref_grams.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, two rows)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """ROUGE-L F1 in [0, 1]."""
    return _f1(lcs_length(hyp, ref), len(hyp), len(ref))


def bleu4(hyp: Sequence[str], ref: Sequence[str]) -> float:
    """Sentence BLEU-4 in [0, 1], nltk with smoothing method 3 (NIST geometric sequence)."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    if not hyp or not ref:
        return 0.0
    return float(sentence_bleu([list(ref)], list(hyp),
                               smoothing_function=SmoothingFunction().method3))


def score(hypothesis: str, reference: str) -> dict[str, float]:
    """Every metric of one answer, 0-100."""
    hyp, ref = tokenize(hypothesis), tokenize(reference)
    if not hyp and not ref:
        return dict.fromkeys(METRICS, 100.0)
    values = {"rouge-1": rouge_n(hyp, ref, 1), "rouge-2": rouge_n(hyp, ref, 2),
              "rouge-l": rouge_l(hyp, ref), "bleu-4": bleu4(hyp, ref)}
    return {name: 100.0 * value for name, value in values.items()}
