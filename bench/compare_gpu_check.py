"""Checkpoint Compare on a CUDA GPU, where the engine uses the static-cache CUDA-graph decoder:
loading adapters into the shared model must drop that decoder (its graphs know nothing of the
adapters), "base" must stay the base model, and the Chat (engine straight) must keep answering
as the base. No Streamlit, no jieba/nltk needed.

A random model of SmolLM2-135M's shape (its config and tokenizer are read from --assets: the
embedded model's config.json, tokenizer files and chat template) stands in for the real one,
and a LoRA adapter with random (non-zero) weights is made for it with peft.

    PYTHONPATH=. python bench/compare_gpu_check.py --assets DIR

Exit status: 0 every check passed, 1 a check failed, 2 no GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

PROMPT = [{"role": "user", "content": "Write a short note about the sea."}]
ASSET_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
               "generation_config.json")


def make_base(assets: Path, folder: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = json.loads((assets / "config.json").read_text())
    config.pop("quantization_config", None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.save_pretrained(folder)
    for name in ASSET_FILES[1:]:
        if (assets / name).is_file():
            shutil.copy(assets / name, folder / name)


def make_adapter(base: Path, folder: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(1)
    model = LlamaForCausalLM.from_pretrained(base)
    lora = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                      init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(folder)


def reply(engine, settings):
    with engine.generation_slot():
        stream = engine.chat_stream(PROMPT, settings)
        for _ in stream:
            pass
    return stream.text, stream.stats


def variant_reply(host, variant, settings):
    with host.generating(variant):
        stream = host.engine.chat_stream(PROMPT, settings)
        for _ in stream:
            pass
    return stream.text, stream.stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", required=True, type=Path)
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args()
    import peft
    import torch
    import transformers

    if not torch.cuda.is_available():
        print("no CUDA GPU here")
        return 2
    print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "transformers": transformers.__version__, "peft": peft.__version__}))
    from backend.compare.loss import reference_nll
    from backend.compare.variants import BASE, FAST_PATH_NOTE, VariantHost, variant_for
    from backend.engine import ModelEngine
    from backend.model_loader import ModelSpec
    from backend.sampling import SamplingSettings
    from backend.training.encoding import ChatEncoder
    from backend.training.formats import Turn

    work = Path(tempfile.mkdtemp(prefix="cmpgpu-"))
    base, adapter = work / "base", work / "adapter"
    make_base(args.assets, base)
    make_adapter(base, adapter)
    greedy = SamplingSettings(temperature=0.0, max_new_tokens=args.new_tokens)
    engine = ModelEngine()
    started = time.perf_counter()
    loaded = engine.load(ModelSpec(path=str(base)))
    print(f"loaded in {time.perf_counter() - started:.1f} s; fast path: {loaded.fast_path}")
    checks: dict[str, bool] = {"static path on at load": loaded.decode_path == "static"}

    static_text, static_stats = reply(engine, greedy)
    loaded.decode_path = "loop"  # the plain path's answer, for reference (then back)
    loop_text, loop_stats = reply(engine, greedy)
    loaded.decode_path = "static"
    print(f"base, static path: {static_stats.summary()}\nbase, plain loop : {loop_stats.summary()}")
    print(f"static and plain loop give the same greedy text: {static_text == loop_text}")

    host = VariantHost(engine, str(base))
    model_before = loaded.model
    tuned = variant_for(str(adapter))
    refused = host.prepare([BASE, tuned])
    checks["adapter accepted"] = refused == {}
    checks["static decoder dropped once an adapter is in"] = (
        loaded.static_decoder is None and loaded.decode_path == "loop"
        and loaded.fast_path == FAST_PATH_NOTE)
    tuned_text, tuned_stats = variant_reply(host, tuned, greedy)
    base_text, base_stats = variant_reply(host, BASE, greedy)
    chat_text, _ = reply(engine, greedy)
    print(f"base variant : {base_stats.summary()}\nadapter      : {tuned_stats.summary()}")
    checks["adapter answers differently"] = tuned_text != base_text
    checks["'base' is exactly the base model (plain loop)"] = base_text == loop_text
    checks["Chat afterwards gets the base model"] = chat_text == loop_text
    checks["base never reloaded"] = engine.loaded is loaded and loaded.model is model_before

    encoder = ChatEncoder(loaded.tokenizer)
    turns = (Turn("user", PROMPT[0]["content"], False, 1),
             Turn("assistant", "The sea is wide and deep.", True, 2))
    losses = {}
    for variant in (BASE, tuned):
        with host.generating(variant) as current:
            losses[variant.label] = reference_nll(current.model, encoder, turns,
                                                  current.context_length)
    print(f"reference NLL (sum, tokens): {losses}")
    checks["loss on CUDA: finite, per variant"] = all(
        n > 0 and total == total and total < float("inf") for total, n in losses.values()) \
        and losses[BASE.label] != losses[tuned.label]
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
