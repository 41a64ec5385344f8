"""Greedy tokens on the GPU: the fast path (q/k/v fused, static cache, compiled, CUDA graphs)
against the plain path (the unfused model, dynamic cache, eager), issue 8.

For each model shape (ChatGLM3-6B's, as transformers' GLM, and SmolLM2-135M's, as Llama; random
weights, seed 0) and each precision (fp32, bf16), the same weights decode 64 greedy tokens after
a 512-token prompt, first on the plain path, then (after fusing q/k/v, as the app's loader does)
on the fast path. Reported: how many leading tokens agree.

Random weights give flat logits (top-2 gaps of a few hundredths), so in bf16 any change of
rounding can flip an argmax. To tell a path's error from bf16 rounding, the bf16 rows also
report where the plain path in bf16 departs from the plain path in fp32 on the same weights:
the noise floor that any bf16 kernel change lives with.

    PYTHONPATH=. python bench/gpu_greedy_equality.py [--tiny]   (--tiny: a CPU smoke run)
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import GlmForCausalLM, LlamaForCausalLM

from backend.generation import GenerationStats, decode_loop
from backend.qkv_fusion import fuse_qkv
from backend.sampling import SamplingSettings
from backend.static_decode import StaticDecoder
from bench.gpu_generation import glm_6b, leading_agreement, smollm2

PROMPT, NEW = 512, 64


def build(model_cls, config, device: torch.device, dtype: torch.dtype):
    """The seed-0 random model in fp32, then cast: every precision holds the same weights."""
    torch.manual_seed(0)
    with torch.device(device):
        model = model_cls(config).eval()
    return model.to(dtype)


def plain_tokens(model, prompt: list[int], new: int) -> list[int]:
    settings = SamplingSettings(temperature=0.0, max_new_tokens=new)
    return list(decode_loop(model, prompt, settings, set(), GenerationStats(), ignore_eos=True))


def fast_tokens(model, prompt: list[int], new: int, compile_: bool) -> tuple[list[int], int, float]:
    fused = fuse_qkv(model)
    started = time.perf_counter()
    decoder = StaticDecoder(model, max_cache_len=1024, compile=compile_)
    decoder.warm_up(lengths=(len(prompt) + new,))
    warm = time.perf_counter() - started
    settings = SamplingSettings(temperature=0.0, max_new_tokens=new)
    tokens = list(decoder.decode(prompt, settings, set(), GenerationStats(), ignore_eos=True))
    return tokens, fused, warm


def check(name: str, model_cls, config, device: torch.device, tiny: bool) -> list[dict]:
    prompt = torch.randint(3, config.vocab_size, (PROMPT if not tiny else 32,),
                           generator=torch.Generator().manual_seed(1)).tolist()
    new = NEW if not tiny else 8
    rows, fp32_plain = [], None
    for dtype in (torch.float32, torch.bfloat16):
        model = build(model_cls, config, device, dtype)
        plain = plain_tokens(model, prompt, new)
        fast, fused, warm = fast_tokens(model, prompt, new, compile_=device.type == "cuda")
        row = {"model": name, "dtype": str(dtype).replace("torch.", ""),
               "fused_qkv_layers": fused, "compile_and_warmup_s": round(warm, 1),
               "fast_vs_plain": f"{leading_agreement(plain, fast)}/{new}",
               "plain": plain[:16], "fast": fast[:16]}
        if fp32_plain is None:
            fp32_plain = plain
        else:
            row["plain_bf16_vs_plain_fp32"] = f"{leading_agreement(fp32_plain, plain)}/{new}"
        print(json.dumps(row), flush=True)
        rows.append(row)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="small shapes, CPU smoke run")
    parser.add_argument("--out", default="bench/out/gpu_greedy_equality.json")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    label = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    print(f"device: {label}; torch {torch.__version__}", flush=True)
    rows = check("SmolLM2-135M shape (Llama)", LlamaForCausalLM, smollm2(args.tiny), device,
                 args.tiny)
    rows += check("ChatGLM3-6B shape (GLM)", GlmForCausalLM, glm_6b(args.tiny), device,
                  args.tiny)
    print(f"{'model':28} {'dtype':9} {'fast vs plain':>13} {'bf16 vs fp32 (plain)':>21}")
    for r in rows:
        print(f"{r['model']:28} {r['dtype']:9} {r['fast_vs_plain']:>13} "
              f"{r.get('plain_bf16_vs_plain_fp32', '-'):>21}")
    from pathlib import Path

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": label, "torch": torch.__version__, "rows": rows},
                              indent=2))


if __name__ == "__main__":
    main()
