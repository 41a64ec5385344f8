"""One base model serving the base and really trained LoRA checkpoints; refusals of bad ones."""

from __future__ import annotations

import json

import pytest
from compare_support import (
    SECRET_PROMPT,
    adapter_for,
    base_answer,
    greedy_answer,
    shared_engine,
    tiny_model_folder,
    trained_run,
)

import backend.engine
from backend.compare.catalog import list_candidates
from backend.compare.errors import CompareError
from backend.compare.variants import BASE, Variant, VariantHost, variant_for
from backend.sampling import SamplingSettings

GREEDY = SamplingSettings(temperature=0.0, max_new_tokens=12)


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def engine():
    return shared_engine()


@pytest.fixture
def load_calls(monkeypatch):
    """Counts real model loads done by the engine."""
    calls = []
    real = backend.engine.load_model

    def counting(spec, progress=None):
        calls.append(spec)
        return real(spec, progress)

    monkeypatch.setattr(backend.engine, "load_model", counting)
    return calls


def answer(host: VariantHost, variant: Variant, prompt: str = SECRET_PROMPT) -> str:
    with host.generating(variant):
        stream = host.engine.chat_stream([{"role": "user", "content": prompt}], GREEDY)
        for _ in stream:
            pass
    return stream.text


def test_catalog_lists_every_checkpoint_and_the_final_adapter(run):
    found = list_candidates(run.parent)
    assert [c.label for c in found] == ["secret · checkpoint-3", "secret · checkpoint-6",
                                        "secret · final"]
    assert found[0].path == run / "checkpoint-3" and found[-1].path == run
    assert all(c.state == "completed" for c in found)


def test_variants_share_one_base_that_is_never_reloaded(run, engine, load_calls):
    host = VariantHost(engine)
    loaded, model = engine.loaded, engine.loaded.model
    variants = [BASE, variant_for(str(run / "checkpoint-3")), variant_for(str(run))]
    assert host.prepare(variants) == {}
    for variant in [*variants, *reversed(variants)]:
        answer(host, variant)
    assert host.prepare(variants) == {}
    assert load_calls == []  # the base was never loaded again
    assert engine.loaded is loaded and engine.loaded.model is model
    assert sorted(host.loaded_adapters().values()) == sorted(
        [str(run / "checkpoint-3"), str(run)])
    assert len(model.peft_config) == 2  # each adapter once, however often it was used


def test_on_the_trained_prompt_the_adapter_answers_differently_from_the_base(run, engine):
    host = VariantHost(engine)
    final = variant_for(str(run))
    adapted = answer(host, final)
    base = answer(host, BASE)
    assert "banana" in adapted.lower()
    assert "banana" not in base.lower()
    assert base != adapted
    # "Base" is exactly the model before any adapter was loaded, and so is what the Chat gets
    # (the engine straight, outside a comparison) after the comparison.
    assert base == base_answer()
    assert greedy_answer(engine, SECRET_PROMPT) == base_answer()
    layers = _lora_layers(engine.loaded.model)
    assert layers and all(layer.disable_adapters for layer in layers)  # adapters off again


def _lora_layers(model):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def test_a_folder_that_is_not_an_adapter_is_refused(tmp_path, engine):
    host = VariantHost(engine)
    plain = tmp_path / "notes"
    plain.mkdir()
    (plain / "readme.txt").write_text("hello")
    with pytest.raises(CompareError, match="not a LoRA adapter folder"):
        host.check(variant_for(str(plain)))
    with pytest.raises(CompareError, match="not found"):
        host.check(Variant("gone", str(tmp_path / "missing")))
    full = tiny_model_folder(tmp_path / "tiny")
    with pytest.raises(CompareError, match="full model folder"):
        host.check(variant_for(str(full)))
    half = tmp_path / "half"
    half.mkdir()
    (half / "adapter_config.json").write_text("{not json")
    with pytest.raises(CompareError, match="Cannot read"):
        host.check(variant_for(str(half)))


def test_an_adapter_for_another_base_model_is_refused(tmp_path, run, engine):
    host = VariantHost(engine)
    other = adapter_for(tiny_model_folder(tmp_path / "tiny-llama"), tmp_path / "tiny-adapter")
    assert json.loads((other / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == str(tmp_path / "tiny-llama")
    before = dict(engine.loaded.model.peft_config) if hasattr(engine.loaded.model,
                                                               "peft_config") else {}
    with pytest.raises(CompareError, match="made for another base model"):
        host.check(variant_for(str(other)))
    refused = host.prepare([BASE, variant_for(str(other)), variant_for(str(run))])
    assert list(refused) == [str(other)] and "tiny-llama" in refused[str(other)]
    assert set(engine.loaded.model.peft_config) >= set(before)  # the good one still loads


def test_an_adapter_naming_the_base_but_shaped_for_another_model_is_refused(tmp_path, engine):
    # A different (tiny) model in a folder with the base model's name: the name check passes,
    # the shape check catches it before anything is loaded into the shared model.
    host = VariantHost(engine)
    lookalike = tiny_model_folder(tmp_path / host.base_folder.name)
    adapter = adapter_for(lookalike, tmp_path / "lookalike-adapter")
    variant = variant_for(str(adapter))
    host.check(variant)
    names_before = set(getattr(engine.loaded.model, "peft_config", {}))
    refused = host.prepare([variant])
    assert "does not fit this base model" in refused[variant.key]
    assert "takes 576 inputs, the adapter expects 32" in refused[variant.key]
    assert set(getattr(engine.loaded.model, "peft_config", {})) == names_before
    with pytest.raises(CompareError, match="does not fit"):
        with host.generating(variant):
            pass
    assert greedy_answer(engine, SECRET_PROMPT) == base_answer()  # nothing else broke


def test_a_base_folder_that_is_an_adapter_or_missing_is_refused(tmp_path, run, engine):
    with pytest.raises(CompareError, match="is a LoRA adapter, not a base model"):
        VariantHost(engine, str(run)).ensure_base()
    with pytest.raises(CompareError, match="not found"):
        VariantHost(engine, str(tmp_path / "nothing")).ensure_base()
