"""Evaluation results: per sample and variant, per variant (means), and their CSV/JSON exports.

Scores are on a 0-100 scale; the validation loss is the mean negative log-likelihood (nats per
token) of the reference answers' tokens, over every sample (lower is better).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from backend.compare.metrics import METRIC_LABELS, METRICS

LOSS_LABEL = "val loss"


@dataclass
class SampleOutput:
    """One variant's answer to one sample, and its scores."""

    output: str
    scores: dict[str, float]
    new_tokens: int = 0
    tokens_per_s: float = 0.0
    nll: float = 0.0  # summed over the reference's tokens
    nll_tokens: int = 0
    error: str | None = None


@dataclass
class VariantResult:
    """Every sample's output for one variant."""

    label: str
    key: str
    outputs: list[SampleOutput]
    seconds: float = 0.0
    created_at: float = 0.0
    from_cache: bool = False

    def summary(self) -> dict[str, Any]:
        n = len(self.outputs)
        row: dict[str, Any] = {"variant": self.label}
        for name in METRICS:
            values = [o.scores.get(name, 0.0) for o in self.outputs]
            row[METRIC_LABELS[name]] = sum(values) / n if n else math.nan
        tokens = sum(o.nll_tokens for o in self.outputs)
        row[LOSS_LABEL] = sum(o.nll for o in self.outputs) / tokens if tokens else math.nan
        rates = [o.tokens_per_s for o in self.outputs if o.tokens_per_s > 0]
        row["tokens/s"] = sum(rates) / len(rates) if rates else 0.0
        row["samples"] = n
        row["errors"] = sum(1 for o in self.outputs if o.error)
        row["cached"] = self.from_cache
        return row

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("from_cache")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], from_cache: bool = True) -> VariantResult:
        outputs = [SampleOutput(**o) for o in data["outputs"]]
        return cls(data["label"], data["key"], outputs, float(data.get("seconds", 0.0)),
                   float(data.get("created_at", 0.0)), from_cache)


@dataclass
class SampleInfo:
    """A validation sample as the tables show it."""

    number: int
    prompt: str
    reference: str


@dataclass
class EvalResult:
    """A whole evaluation: the file, the settings, the samples and every variant's results."""

    data_path: str
    file_hash: str
    settings: dict[str, Any]
    samples: list[SampleInfo]
    variants: list[VariantResult] = field(default_factory=list)

    @property
    def from_cache(self) -> bool:
        return bool(self.variants) and all(v.from_cache for v in self.variants)

    def summary_frame(self) -> pd.DataFrame:
        """One row per variant: mean scores, validation loss, speed."""
        return pd.DataFrame([v.summary() for v in self.variants])

    def samples_frame(self) -> pd.DataFrame:
        """One row per sample: prompt, reference, and every variant's output."""
        rows = []
        for i, sample in enumerate(self.samples):
            row: dict[str, Any] = {"record": sample.number, "prompt": sample.prompt,
                                   "reference": sample.reference}
            for variant in self.variants:
                row[variant.label] = variant.outputs[i].output
            rows.append(row)
        return pd.DataFrame(rows)

    def long_frame(self) -> pd.DataFrame:
        """One row per (sample, variant) with its scores: the CSV export."""
        rows = []
        for variant in self.variants:
            for sample, out in zip(self.samples, variant.outputs, strict=True):
                row = {"variant": variant.label, "record": sample.number, "prompt": sample.prompt,
                       "reference": sample.reference, "output": out.output}
                row.update({METRIC_LABELS[m]: out.scores.get(m, 0.0) for m in METRICS})
                row[LOSS_LABEL] = out.nll / out.nll_tokens if out.nll_tokens else math.nan
                row.update(new_tokens=out.new_tokens, tokens_per_s=out.tokens_per_s,
                           error=out.error or "")
                rows.append(row)
        return pd.DataFrame(rows)

    def to_csv(self) -> str:
        return self.long_frame().to_csv(index=False)

    def summary_csv(self) -> str:
        return self.summary_frame().to_csv(index=False)

    def to_json(self) -> str:
        data = {
            "data_path": self.data_path, "file_sha256": self.file_hash, "settings": self.settings,
            "scale": "ROUGE-1/2/L F1 and BLEU-4 on 0-100; val loss in nats per reference token",
            "summary": [_clean(v.summary()) for v in self.variants],
            "samples": [
                {**asdict(s), "outputs": {v.label: asdict(v.outputs[i]) for v in self.variants}}
                for i, s in enumerate(self.samples)
            ],
        }
        return json.dumps(data, ensure_ascii=False, indent=2)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: None instead."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
