"""Batch evaluation: every variant answers every validation sample; the answers are scored
against the references, and the references' loss is measured under each variant.

Each variant's results are cached on disk under a key made of the base model folder (and its
mtime), the adapter folder (and its mtime), the data file's SHA-256 and the settings, so that
the same evaluation is never computed twice. Every generation holds the engine's lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from jinja2 import TemplateError

from backend.compare import metrics
from backend.compare.adapters import read_adapter
from backend.compare.cache import ResultCache, entry_key, folder_stamp
from backend.compare.loss import reference_nll
from backend.compare.results import EvalResult, SampleInfo, SampleOutput, VariantResult
from backend.compare.samples import Sample, load_samples
from backend.compare.variants import Variant, VariantHost
from backend.prompting import PromptTooLongError
from backend.sampling import SamplingSettings
from backend.training.encoding import ChatEncoder, TemplateRejected

CACHE_VERSION = 1
log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class EvalSettings:
    """How the answers are generated, and how many samples (the first N records) are used."""

    sampling: SamplingSettings
    max_samples: int = 50

    def to_dict(self) -> dict:
        """What the results depend on (greedy decoding ignores top_p, top_k and the seed)."""
        sampling = asdict(self.sampling)
        if self.sampling.greedy:
            sampling = {k: v for k, v in sampling.items() if k not in ("top_p", "top_k", "seed")}
            sampling["temperature"] = 0.0
        return {"sampling": sampling, "max_samples": self.max_samples}


def variant_key(host: VariantHost, variant: Variant, file_hash: str,
                settings: EvalSettings, base_stamp: int | None = None) -> str:
    """The cache key of one variant's results (CompareError for an unusable adapter).

    `base_stamp` is `folder_stamp(host.base_folder)`, read here when not given.
    """
    if base_stamp is None:
        base_stamp = folder_stamp(host.base_folder)
    parts = {"version": CACHE_VERSION, "base": str(host.base_folder),
             "base_stamp": base_stamp, "variant": variant.key,
             "file": file_hash, "settings": settings.to_dict()}
    if not variant.is_base:
        info = read_adapter(variant.path)
        parts.update(variant=str(info.path), adapter_stamp=info.stamp)
    return entry_key(parts)


def _answer(host: VariantHost, variant: Variant, encoder: ChatEncoder, sample: Sample,
            sampling: SamplingSettings, on_wait) -> SampleOutput:
    with host.generating(variant, on_wait) as loaded:
        text, error, new_tokens, rate = "", None, 0, 0.0
        try:
            stream = host.engine.chat_stream(encoder.messages(sample.prompt_turns), sampling)
            for _ in stream:
                pass
            text, new_tokens, rate = stream.text, stream.stats.new_tokens, \
                stream.stats.tokens_per_s
        except (PromptTooLongError, TemplateError) as exc:
            error = f"{sample.where}: {exc}"
        try:
            nll, count = reference_nll(loaded.model, encoder, sample.turns, loaded.context_length)
        except TemplateRejected as exc:
            nll, count, error = 0.0, 0, error or f"{sample.where}: {exc}"
    return SampleOutput(text, metrics.score(text, sample.reference), new_tokens, rate, nll, count,
                        error)


def evaluate(
    host: VariantHost, variants: list[Variant], data_path: str, settings: EvalSettings,
    cache: ResultCache | None = None, progress: Progress | None = None,
    on_wait: Callable[[float], None] | None = None, only_cached: bool = False,
) -> EvalResult | None:
    """Evaluate `variants` on the file; cached variants are not recomputed.

    With `only_cached`, returns None unless every variant is in the cache (nothing is loaded).
    Raises CompareError for bad data or adapters, ModelLoadError when the base cannot load.
    """
    report = progress or (lambda _f, _m: None)
    samples, digest = load_samples(data_path, settings.max_samples)
    results: list[VariantResult | None] = []
    todo: list[tuple[int, Variant, str]] = []
    base_stamp = folder_stamp(host.base_folder)  # the same for every variant
    for index, variant in enumerate(variants):
        key = variant_key(host, variant, digest, settings, base_stamp)
        data = cache.get(key) if cache is not None else None
        if data is not None and len(data.get("outputs", ())) == len(samples):
            results.append(VariantResult.from_dict({**data, "label": variant.label}))
        else:
            results.append(None)
            todo.append((index, variant, key))
    if todo and only_cached:
        return None
    if todo:
        report(0.0, "Loading the base model")
        encoder = ChatEncoder(host.ensure_base().tokenizer)
    total, done = len(todo) * len(samples), 0
    for index, variant, key in todo:
        started, outputs = time.perf_counter(), []
        for number, sample in enumerate(samples, start=1):
            report(done / total, f"{variant.label}: sample {number} of {len(samples)}")
            outputs.append(_answer(host, variant, encoder, sample, settings.sampling, on_wait))
            done += 1
        result = VariantResult(variant.label, variant.key, outputs,
                               time.perf_counter() - started, time.time())
        if cache is not None:
            try:
                cache.put(key, result.to_dict())
            except OSError as exc:  # results still show; they just are not kept
                log.warning("cannot write the results cache %s: %s", cache.root, exc)
        results[index] = result
    if todo:
        report(1.0, "Done")
    infos = [SampleInfo(s.number, s.prompt_text, s.reference) for s in samples]
    return EvalResult(str(data_path), digest, settings.to_dict(), infos,
                      [r for r in results if r is not None])
