"""Where a decode step's time goes on the GPU: static-cache variants and a kernel profile.

    PYTHONPATH=. python bench/profile_decode.py
"""

from __future__ import annotations

import json
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import GlmForCausalLM

from backend.generation import GenerationStats
from backend.sampling import SamplingSettings
from backend.static_decode import StaticDecoder
from bench.gpu_generation import copy_bandwidth, glm_6b


def tps(decoder, prompt, new=256, reps=3):
    settings = SamplingSettings(temperature=0.0, max_new_tokens=new)
    best = []
    for _ in range(reps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in decoder.decode(prompt, settings, set(), GenerationStats(), ignore_eos=True):
            pass
        torch.cuda.synchronize()
        best.append(new / (time.perf_counter() - start))
    return round(sorted(best)[len(best) // 2], 1)


def main():
    device = torch.device("cuda")
    bw = copy_bandwidth(device)
    torch.manual_seed(0)
    with torch.device(device):
        torch.set_default_dtype(torch.bfloat16)
        model = GlmForCausalLM(glm_6b(False)).eval()
        torch.set_default_dtype(torch.float32)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"limit": round(bw / weight_bytes, 1),
                      "attn": model.config._attn_implementation}))
    prompt = torch.randint(0, 65024, (512,)).tolist()
    # A second variant, "cache1024_fullgraph_cdt" (fullgraph=True plus coordinate-descent
    # tuning), was dropped: StaticDecoder compiles with both by default, so it only measured
    # "cache1024" again.
    variants = [("cache1024", dict(max_cache_len=1024))]
    for name, kwargs in variants:
        torch._dynamo.reset()
        t0 = time.perf_counter()
        try:
            dec = StaticDecoder(model, **kwargs)
            dec.warm_up()
            print(json.dumps({"variant": name, "compile_s": round(time.perf_counter() - t0, 1),
                              "tokens_per_s": tps(dec, prompt)}), flush=True)
        except Exception as exc:  # noqa: BLE001
            print(json.dumps({"variant": name, "error": f"{type(exc).__name__}: {exc}"[:800]}))
            continue
        if name == "cache1024":
            settings = SamplingSettings(temperature=0.0, max_new_tokens=40)
            with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
                for _ in dec.decode(prompt, settings, set(), GenerationStats(), ignore_eos=True):
                    pass
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25,
                                            max_name_column_width=70))
        dec = None


if __name__ == "__main__":
    main()
