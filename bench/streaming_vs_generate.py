"""Tokens/s of the app's streaming path against plain `model.generate`, in one run.

The streaming path is the generator the UI consumes (`ChatStream`: own decode loop plus
incremental detokenization). Baselines: `model.generate` with no streamer (the goal's reference)
and `generate` with a TextIteratorStreamer in a thread (the usual way to stream). The three run
interleaved, round after round, so that machine noise hits all of them alike; medians are reported.

    PYTHONPATH=. .venv/bin/python bench/streaming_vs_generate.py [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import threading
import time
from pathlib import Path

import torch
from transformers import TextIteratorStreamer

from backend.generation import ChatStream, stop_token_ids
from backend.model_loader import ModelSpec, load_model
from backend.prompting import encode_prompt
from backend.sampling import SamplingSettings

PROMPT = [{"role": "user", "content": "Write a detailed essay about the history of the printing "
                                      "press and its effect on European society."}]


def run_generate(model, ids, n, gen_config):
    input_ids = torch.tensor([ids], device=model.device)
    start = time.perf_counter()
    out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                         generation_config=gen_config, max_new_tokens=n, do_sample=False)
    elapsed = time.perf_counter() - start
    return out.shape[1] - len(ids), elapsed, None


def run_stream(model, tok, ids, n, stop_ids):
    settings = SamplingSettings(temperature=0, max_new_tokens=n)
    start = time.perf_counter()
    stream = ChatStream(model, tok, ids, settings, stop_ids, ignore_eos=True)
    first = None
    for _ in stream:
        if first is None:
            first = time.perf_counter() - start
    elapsed = time.perf_counter() - start
    return stream.stats.new_tokens, elapsed, first


def run_thread_streamer(model, tok, ids, n, gen_config):
    input_ids = torch.tensor([ids], device=model.device)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(attention_mask=torch.ones_like(input_ids), generation_config=gen_config,
                  max_new_tokens=n, do_sample=False, streamer=streamer)
    start = time.perf_counter()
    worker = threading.Thread(target=model.generate, args=(input_ids,), kwargs=kwargs)
    worker.start()
    first = None
    for _ in streamer:
        if first is None:
            first = time.perf_counter() - start
    worker.join()
    return n, time.perf_counter() - start, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="bench/results/streaming_cpu.json")
    args = parser.parse_args()

    loaded = load_model(ModelSpec(path=args.model))
    model, tok = loaded.model, loaded.tokenizer
    ids = encode_prompt(tok, PROMPT)
    gen_config = copy.deepcopy(model.generation_config)
    gen_config.eos_token_id = None  # run every round to exactly n tokens, like ignore_eos
    stop_ids = stop_token_ids(model, tok)
    n = args.new_tokens

    runners = {
        "generate": lambda: run_generate(model, ids, n, gen_config),
        "app_stream": lambda: run_stream(model, tok, ids, n, stop_ids),
        "thread_streamer": lambda: run_thread_streamer(model, tok, ids, n, gen_config),
    }
    for fn in runners.values():  # warm-up
        fn()
    results: dict[str, list[tuple[int, float, float | None]]] = {k: [] for k in runners}
    names = list(runners)
    for r in range(args.rounds):
        for name in names[r % 3:] + names[:r % 3]:
            tokens, elapsed, first = runners[name]()
            assert tokens == n, (name, tokens)
            results[name].append((tokens, elapsed, first))

    def tps(name):
        return statistics.median(t / e for t, e, _ in results[name])

    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
                   f"torch threads, device {loaded.device}, dtype {loaded.dtype}",
        "model": loaded.name, "prompt_tokens": len(ids), "new_tokens": n, "rounds": args.rounds,
        "tokens_per_s": {k: round(tps(k), 2) for k in runners},
        "ratio_app_stream_vs_generate": round(tps("app_stream") / tps("generate"), 3),
        "ratio_thread_streamer_vs_generate": round(tps("thread_streamer") / tps("generate"), 3),
        "ttft_s_app_stream_median": round(statistics.median(f for *_, f in results["app_stream"]),
                                          4),
        "ttft_s_thread_streamer_median": round(
            statistics.median(f for *_, f in results["thread_streamer"]), 4),
    }
    print(json.dumps(summary, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
