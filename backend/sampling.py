"""Sampling settings, the use-case presets, and the logits processors that implement them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# temperature / top_p by use case (../shared/formats.md, section 5)
PRESETS: dict[str, tuple[float, float]] = {
    "Code generation": (0.2, 0.1),
    "Creative writing": (0.7, 0.8),
    "Chatbot replies": (0.5, 0.5),
    "Tool calling": (0.0, 0.7),
    "Code comments": (0.1, 0.2),
    "Data-analysis scripts": (0.2, 0.1),
    "Exploratory coding": (0.6, 0.7),
}


@dataclass
class SamplingSettings:
    """How to pick tokens. temperature 0 means greedy decoding."""

    temperature: float = 0.5
    top_p: float = 0.5
    top_k: int = 50
    repetition_penalty: float = 1.0
    max_new_tokens: int = 512
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def generate_kwargs(self) -> dict[str, Any]:
        """The same settings as keyword arguments of `model.generate`."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "do_sample": not self.greedy,
        }
        if not self.greedy:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kwargs


def build_logits_processors(settings: SamplingSettings):
    """Processors in the order `generate` applies them: penalty, then temperature, top-k, top-p."""
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if settings.repetition_penalty and settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
    if settings.greedy:
        return processors
    if settings.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k and settings.top_k > 0:
        processors.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p < 1.0:
        processors.append(TopPLogitsWarper(settings.top_p))
    return processors
