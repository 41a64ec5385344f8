"""Single-stream generation speed on a CUDA GPU against the memory-bandwidth limit (issue 8).

One run measures, for a random-weight model of ChatGLM3-6B's shape (transformers' native GLM
architecture, bf16) and for the embedded model's architecture (SmolLM2-135M, random weights: the
real weights cannot travel to the GPU machine):

- the limit: weight bytes / measured device copy bandwidth;
- plain `model.generate` (dynamic cache);
- the workbench's fast path alone (static cache + CUDA graphs, token ids only);
- the app's streaming path: `ChatStream`, the generator the UI consumes (detokenization included);
- time to first token for a 2,000-token prompt through the streaming path;
- greedy agreement between the fast path and the plain decode loop.

    PYTHONPATH=. python bench/gpu_generation.py [--tiny]   (--tiny: a CPU smoke run)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    GlmConfig,
    GlmForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from backend.generation import ChatStream, GenerationStats, decode_loop
from backend.qkv_fusion import fuse_qkv
from backend.sampling import SamplingSettings
from backend.static_decode import StaticDecoder

PROMPT, NEW, LONG_PROMPT = 512, 256, 2000


def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A tokenizer with one short word per id, so any id the random model emits decodes."""
    vocab = {f"w{i}": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def glm_6b(tiny: bool):
    if tiny:
        return GlmConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, intermediate_size=128,
                         vocab_size=65024, max_position_embeddings=8192, pad_token_id=0,
                         eos_token_id=2, bos_token_id=1)
    return GlmConfig(hidden_size=4096, num_hidden_layers=28, num_attention_heads=32,
                     num_key_value_heads=2, head_dim=128, intermediate_size=13696,
                     vocab_size=65024, max_position_embeddings=32768, pad_token_id=0,
                     eos_token_id=2, bos_token_id=1)


def smollm2(tiny: bool):
    return LlamaConfig(hidden_size=576, num_hidden_layers=30 if not tiny else 2,
                       num_attention_heads=9, num_key_value_heads=3, intermediate_size=1536,
                       vocab_size=49152, max_position_embeddings=8192, tie_word_embeddings=True,
                       rope_theta=100000.0)


def copy_bandwidth(device) -> float:
    """Bytes moved per second (read + write) by a large device-to-device copy."""
    if device.type != "cuda":
        return float("nan")
    src = torch.empty(2 * 1024**3, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    start, reps = time.perf_counter(), 20
    for _ in range(reps):
        dst.copy_(src)
    torch.cuda.synchronize()
    rate = 2 * src.numel() * reps / (time.perf_counter() - start)
    del src, dst
    torch.cuda.empty_cache()
    return rate


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - start)
    return out


def leading_agreement(a: list[int], b: list[int]) -> int:
    """How many leading tokens two sequences share."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)))


def measure(name, model_cls, config, device, dtype, bandwidth, tiny):
    torch.manual_seed(0)
    with torch.device(device):
        torch.set_default_dtype(dtype)
        model = model_cls(config).eval()
        torch.set_default_dtype(torch.float32)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    fused = fuse_qkv(model) if device.type == "cuda" else 0  # as the app's loader does
    tok = word_tokenizer(config.vocab_size)
    prompt = torch.randint(0, config.vocab_size, (PROMPT,)).tolist()
    long_prompt = torch.randint(0, config.vocab_size, (LONG_PROMPT,)).tolist()
    new = 16 if tiny else NEW
    reps = 1 if tiny else 3
    settings = SamplingSettings(temperature=0.0, max_new_tokens=new)
    ids = torch.tensor([prompt], device=device)

    def plain_generate():
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                       min_new_tokens=new, do_sample=False)

    t0 = time.perf_counter()
    decoder = StaticDecoder(model, max_cache_len=4096, compile=device.type == "cuda")
    decoder.warm_up(lengths=(PROMPT + new, LONG_PROMPT + new))  # both cache sizes used below
    compile_s = time.perf_counter() - t0

    def fast_tokens():
        for _ in decoder.decode(prompt, settings, set(), GenerationStats(), ignore_eos=True):
            pass

    def app_stream(tokens=prompt):
        stream = ChatStream(model, tok, tokens, settings, set(), decode_path="static",
                            ignore_eos=True, static_decoder=decoder)
        for _ in stream:
            pass
        return stream

    gen = timed(plain_generate, device, reps)
    fast = timed(fast_tokens, device, reps)
    app = timed(app_stream, device, reps)
    ttft = [app_stream(long_prompt).stats.ttft_s for _ in range(reps)]
    plain_ids = list(decode_loop(model, prompt, SamplingSettings(temperature=0, max_new_tokens=64),
                                 set(), GenerationStats(), ignore_eos=True))
    fast_ids = list(decoder.decode(prompt, SamplingSettings(temperature=0, max_new_tokens=64),
                                   set(), GenerationStats(), ignore_eos=True))
    agree = leading_agreement(plain_ids, fast_ids)  # both hold 64 tokens (ignore_eos)
    tps = {k: new / statistics.median(v) for k, v in
           {"generate": gen, "fast_path": fast, "app_stream": app}.items()}
    limit = bandwidth / weight_bytes
    result = {
        "model": name, "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "weight_gb": round(weight_bytes / 1e9, 2), "prompt_tokens": PROMPT, "new_tokens": new,
        "limit_tokens_per_s": round(limit, 1),
        "tokens_per_s": {k: round(v, 1) for k, v in tps.items()},
        "app_stream_fraction_of_limit": round(tps["app_stream"] / limit, 3),
        "app_stream_overhead_vs_fast_path": round(1 - tps["app_stream"] / tps["fast_path"], 4),
        "speedup_app_stream_vs_generate": round(tps["app_stream"] / tps["generate"], 2),
        "ttft_s_2000_token_prompt": round(statistics.median(ttft), 4),
        "compile_and_warmup_s": round(compile_s, 1), "fused_qkv_layers": fused,
        "greedy_tokens_identical_to_plain_loop": f"{agree}/64",
    }
    print(json.dumps(result, indent=2), flush=True)
    model = decoder = None  # free the GPU memory before the next model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def loader_check(tiny: bool) -> dict:
    """The app's own loader on a saved model folder: is the fast path picked and does it stream?"""
    import tempfile

    from backend.engine import ModelEngine
    from backend.model_loader import ModelSpec

    with tempfile.TemporaryDirectory() as folder:
        config = smollm2(tiny)
        LlamaForCausalLM(config).save_pretrained(folder)
        word_tokenizer(config.vocab_size).save_pretrained(folder)
        engine = ModelEngine()
        loaded = engine.load(ModelSpec(path=folder))
        stream = engine.chat_stream([{"role": "user", "content": "w1 w2 w3"}],
                                    SamplingSettings(temperature=0, max_new_tokens=32),
                                    ignore_eos=True)
        text = "".join(stream)
        result = {"loader_decode_path": loaded.decode_path, "loader_fast_path": loaded.fast_path,
                  "load_seconds": round(loaded.load_seconds, 1),
                  "streamed_tokens": stream.stats.new_tokens, "streamed_chars": len(text)}
        engine.unload()
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="small shapes, CPU smoke run")
    parser.add_argument("--only", choices=["glm6b", "smollm2"], default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    bandwidth = copy_bandwidth(device)
    header = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "copy_bandwidth_tb_s": round(bandwidth / 1e12, 3)}
    print(json.dumps(header), flush=True)
    results = [header]
    if args.only in (None, "glm6b"):
        results.append(measure("ChatGLM3-6B shape (GlmForCausalLM, random)", GlmForCausalLM,
                               glm_6b(args.tiny), device, dtype, bandwidth, args.tiny))
    if args.only in (None, "smollm2"):
        results.append(measure("SmolLM2-135M shape (LlamaForCausalLM, random)",
                               LlamaForCausalLM, smollm2(args.tiny), device, dtype, bandwidth,
                               args.tiny))
    results.append(loader_check(args.tiny))
    print("RESULTS_JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
