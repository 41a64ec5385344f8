"""Streaming generation on the real embedded model."""

from __future__ import annotations

import threading

import pytest
import torch

from backend.detokenizer import IncrementalDetokenizer
from backend.prompting import PromptTooLongError, encode_prompt, fit_to_context
from backend.sampling import PRESETS, SamplingSettings, build_logits_processors

STORY = [{"role": "user", "content": "Tell me a short story about a cat."}]
GREEDY = SamplingSettings(temperature=0, max_new_tokens=40)


def reply(engine, messages, settings):
    stream = engine.chat_stream(messages, settings)
    deltas = list(stream)
    return "".join(deltas), stream, deltas


def test_greedy_is_deterministic(engine):
    first, _, _ = reply(engine, STORY, GREEDY)
    second, _, _ = reply(engine, STORY, GREEDY)
    assert first and first == second


def test_stream_equals_plain_generate(engine):
    loaded = engine.loaded
    ids = encode_prompt(loaded.tokenizer, STORY)
    out = loaded.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                dtype=torch.long), **GREEDY.generate_kwargs())
    expected = loaded.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
    text, stream, deltas = reply(engine, STORY, GREEDY)
    assert text == expected
    assert len(deltas) > 5  # it really streamed, piece by piece
    assert stream.stats.new_tokens == len([t for t in out[0, len(ids):].tolist()
                                           if t not in (loaded.tokenizer.eos_token_id,)])


def test_stream_with_repetition_penalty_equals_generate(engine):
    loaded = engine.loaded
    settings = SamplingSettings(temperature=0, max_new_tokens=30, repetition_penalty=1.3)
    ids = encode_prompt(loaded.tokenizer, STORY)
    out = loaded.model.generate(torch.tensor([ids]), **settings.generate_kwargs())
    expected = loaded.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
    assert reply(engine, STORY, settings)[0] == expected


def test_seeded_sampling_is_reproducible(engine):
    settings = SamplingSettings(temperature=0.9, top_p=0.95, top_k=50, max_new_tokens=30, seed=7)
    assert reply(engine, STORY, settings)[0] == reply(engine, STORY, settings)[0]


def test_presets_match_the_reference_table():
    assert PRESETS["Code generation"] == (0.2, 0.1)
    assert PRESETS["Creative writing"] == (0.7, 0.8)
    assert PRESETS["Chatbot replies"] == (0.5, 0.5)
    assert PRESETS["Tool calling"] == (0.0, 0.7)
    assert PRESETS["Code comments"] == (0.1, 0.2)
    assert PRESETS["Data-analysis scripts"] == (0.2, 0.1)
    assert PRESETS["Exploratory coding"] == (0.6, 0.7)
    assert len(build_logits_processors(SamplingSettings(temperature=0.0))) == 0


@pytest.mark.parametrize("how", ["stop", "close"])
def test_stop_ends_generation_within_two_tokens(engine, how):
    settings = SamplingSettings(temperature=0, max_new_tokens=200)
    stream = engine.chat_stream(STORY, settings)
    seen = 0
    for _ in stream:
        seen = stream.stats.new_tokens
        if seen >= 5:
            stream.stop() if how == "stop" else stream.close()
            if how == "close":
                break
    assert stream.stats.new_tokens <= seen + 2
    assert stream.stats.stop_reason == "stopped"
    assert stream.text  # the partial reply is kept


def test_context_overflow_drops_the_oldest_turns(engine, monkeypatch):
    tok = engine.loaded.tokenizer
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(8):
        messages += [{"role": "user", "content": f"Question {i}: " + "word " * 60},
                     {"role": "assistant", "content": f"Answer {i}: " + "text " * 60}]
    messages.append({"role": "user", "content": "Last question: what is 2+2?"})
    fitted = fit_to_context(tok, messages, max_new_tokens=64, context_length=600)
    assert fitted.dropped_messages > 0
    assert len(fitted.input_ids) <= 600 - 64
    assert fitted.messages[0]["role"] == "system"
    assert fitted.messages[1]["role"] == "user"
    assert fitted.messages[-1]["content"].startswith("Last question")
    # the same through the engine, with the loaded model's context made small
    monkeypatch.setattr(engine.loaded, "context_length", 600)
    stream = engine.chat_stream(messages, SamplingSettings(temperature=0, max_new_tokens=64))
    assert "".join(stream)
    assert stream.dropped_messages == fitted.dropped_messages


def test_a_100kb_prompt_is_refused_with_a_clear_message(engine):
    huge = [{"role": "user", "content": "lorem ipsum " * 9000}]
    with pytest.raises(PromptTooLongError, match="does not fit the model's context"):
        engine.chat_stream(huge, SamplingSettings(max_new_tokens=64))


def test_multibyte_text_detokenizes_intact(engine):
    tok = engine.loaded.tokenizer
    text = "你好，世界！今天天气很好。😀🎉 Ünïcödé — ok"
    detok = IncrementalDetokenizer(tok)
    deltas = [detok.push(t) for t in tok(text, add_special_tokens=False)["input_ids"]]
    deltas.append(detok.flush())
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


def test_a_character_cut_by_the_token_limit_is_dropped_not_garbled(engine):
    tok = engine.loaded.tokenizer
    ids = tok("ok 😀", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids[:-1]).endswith("\ufffd")  # the emoji spans several byte tokens
    detok = IncrementalDetokenizer(tok)
    text = "".join(detok.push(t) for t in ids[:-1]) + detok.flush()
    assert text == "ok " or text == "ok"


def test_multibyte_text_streams_intact_from_the_model(engine):
    messages = [{"role": "user", "content": "请用中文回答：你好吗？😀"}]
    text, stream, deltas = reply(engine, messages, SamplingSettings(temperature=0,
                                                                    max_new_tokens=60))
    assert stream.stats.new_tokens > 0
    full = engine.loaded.tokenizer.decode(stream._detok.ids, skip_special_tokens=True)
    assert text == full.rstrip("\ufffd")  # a character cut by the token limit is dropped
    assert all("\ufffd" not in d for d in deltas[:-1])


def test_generation_slot_serialises_sessions(engine):
    holding, release, waits = threading.Event(), threading.Event(), []

    def first():
        with engine.generation_slot():
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=first)
    worker.start()
    assert holding.wait(10)

    def on_wait(seconds):
        waits.append(seconds)
        if len(waits) >= 2:
            release.set()

    with engine.generation_slot(on_wait=on_wait, poll_s=0.05):
        pass
    worker.join(10)
    assert len(waits) >= 2  # the second session saw that it waited


def test_static_cache_path_gives_the_same_tokens_as_the_plain_loop(engine):
    """The fast path's logic (static cache, one-token pipelining) on the CPU, uncompiled."""
    from backend.generation import GenerationStats, decode_loop, stop_token_ids
    from backend.static_decode import StaticDecoder

    loaded = engine.loaded
    ids = encode_prompt(loaded.tokenizer, STORY)
    stops = stop_token_ids(loaded.model, loaded.tokenizer)
    decoder = StaticDecoder(loaded.model, max_cache_len=160, compile=False)
    for settings in (GREEDY, SamplingSettings(temperature=0, max_new_tokens=40,
                                              repetition_penalty=1.2)):
        plain = list(decode_loop(loaded.model, ids, settings, stops, GenerationStats()))
        fast_stats = GenerationStats()
        fast = list(decoder.decode(ids, settings, stops, fast_stats))
        assert fast == plain and len(fast) > 10
    # reused across generations: a second, different prompt on the same cache
    other = encode_prompt(loaded.tokenizer, [{"role": "user", "content": "Count to five."}])
    assert list(decoder.decode(other, GREEDY, stops, GenerationStats())) == list(
        decode_loop(loaded.model, other, GREEDY, stops, GenerationStats()))
    assert not decoder.fits(100, 100)


def test_cpu_model_reports_why_the_fast_path_is_off(engine):
    assert engine.loaded.decode_path == "loop"
    assert engine.loaded.fast_path == "off: no CUDA GPU"


def test_fused_qkv_projection_gives_the_same_tokens():
    """The GPU fast path fuses q/k/v; on a separate copy of the model the output stays the same."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend import default_model
    from backend.generation import GenerationStats, decode_loop
    from backend.qkv_fusion import fuse_qkv

    folder = default_model.ensure_default_model()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    ids = encode_prompt(tok, STORY)
    before = list(decode_loop(model, ids, GREEDY, set(), GenerationStats()))
    assert fuse_qkv(model) == model.config.num_hidden_layers
    assert fuse_qkv(model) == 0  # idempotent
    after = list(decode_loop(model, ids, GREEDY, set(), GenerationStats()))
    assert after == before
    layer = model.model.layers[0].self_attn
    assert layer.q_proj.weight.data_ptr() == layer.qkv_weight.data_ptr()  # views, no copy


def test_unfused_layers_let_an_adapter_on_q_and_v_take_effect():
    """Checkpoint Compare adds LoRA adapters to a model the GPU fast path fused: leaving the
    fast path gives the layers back their forward, so the adapter's q/v weights count."""
    import torch
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from backend.model_loader import LoadedModel, ModelSpec, drop_fast_path
    from backend.qkv_fusion import fuse_qkv

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2)).eval()
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        base = model(input_ids=ids).logits
    fuse_qkv(model)
    loaded = LoadedModel(ModelSpec(path="x"), "x", model, None, 2048, 0.0,
                         decode_path="static", static_decoder=object(), fast_path="on: test")
    inject_adapter_in_model(LoraConfig(r=4, target_modules=["q_proj", "v_proj"]), model)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    with torch.no_grad():
        fused = model(input_ids=ids).logits
    assert torch.equal(fused, base)  # the fused layers never call the wrapped projections
    drop_fast_path(loaded, "off: adapters")
    with torch.no_grad():
        unfused = model(input_ids=ids).logits
    assert (unfused - base).abs().max() > 1e-3
    assert not hasattr(model.model.layers[0].self_attn, "qkv_weight")
    assert (loaded.decode_path, loaded.static_decoder, loaded.fast_path) == (
        "loop", None, "off: adapters")


def test_generate_thread_fallback_matches_the_loop_and_stops(engine):
    """The path remote-code models take: model.generate in a worker thread."""
    from backend.generation import ChatStream, stop_token_ids

    loaded = engine.loaded
    ids = encode_prompt(loaded.tokenizer, STORY)
    stops = stop_token_ids(loaded.model, loaded.tokenizer)

    def stream(path, settings):
        return ChatStream(loaded.model, loaded.tokenizer, ids, settings, stops, decode_path=path)

    assert "".join(stream("generate", GREEDY)) == "".join(stream("loop", GREEDY))
    long = stream("generate", SamplingSettings(temperature=0, max_new_tokens=200))
    for _ in long:
        if long.stats.new_tokens >= 5:
            long.stop()
    assert long.stats.new_tokens <= 8 and long.stats.stop_reason == "stopped"
