"""LoRA training throughput on one GPU: the reference recipe (a) against the project's defaults (b).

The model is a random-weight model of ChatGLM3-6B's shape (hidden 4096, 28 layers, 32 heads,
2 KV heads, FFN 13696, vocab 65024) as transformers' native GLM architecture, in bf16. The data
is synthetic with a realistic length spread (prompts 20-200 tokens, replies 50-500); prompts are
not trained. Both recipes run through the project's own training path (transformers Trainer +
peft LoRA, the project's collators), for a few warm-up steps and then measured steps.

(a) reference recipe: LoRA r 8 on q/k/v, gradient checkpointing, batch 4, padded to the longest;
(a') the same with sdpa's cuDNN backend off, as the project's training runs (cuDNN builds a new
    plan for every new sequence length: ~1 s of CPU per step here);
(b) this project's defaults (backend/training/config.py): LoRA r 8 on the attention projections
    (q/k/v/o), padding-free packing (4 rows of up to 1024 tokens flattened into one sequence),
    varlen flash attention over each packed example, decoder layers compiled, the LM head fused
    with the loss on trained positions only, full activation checkpointing.

Before the recipes, one packed batch goes through the same model with varlen attention, with
sdpa's block mask and with sdpa's math kernel (the noise floor of bf16 attention): loss and
LoRA gradients are compared.

Reported: real (non-padding) tokens/s, padded slots/s, peak GPU memory (max allocated, and
max reserved), step time; (b) is compared with the faster of (a) and (a'). Extra variants
(--variants) help choose the defaults; results and analysis: bench/results/train_throughput_h100.md.

    PYTHONPATH=. python bench/train_throughput.py            # (a) and (b) on the GPU
    PYTHONPATH=. python bench/train_throughput.py --variants eager-4,sdpa-4   # ~3 min
    PYTHONPATH=. python bench/train_throughput.py --tiny     # CPU smoke run, tiny model
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import GlmConfig, GlmForCausalLM, TrainerCallback

from backend.training.collate import (
    ExampleDataset,
    PackedDataset,
    PackingCollator,
    PaddingCollator,
)
from backend.training.config import TrainConfig
from backend.training.encoding import IGNORE_INDEX, Encoded
from backend.training.loss import use_lean_loss
from backend.training.modeling import (
    apply_lora,
    choose_attention,
    choose_precision,
    compile_layers,
    enable_checkpointing,
    resolve_target_modules,
)
from backend.training.trainer import _make_trainer_class, _training_args
from bench.gpu_generation import glm_6b

GIB = 1024**3
DEFAULTS = TrainConfig()


@dataclass(frozen=True)
class Recipe:
    """One way to train. `checkpointing`: full, selective or off; `lean_loss`: the project's
    chunked loss, with logits only where the next token is trained (packing)."""

    name: str
    targets: str
    checkpointing: str
    packing: bool
    batch_size: int
    max_length: int
    lora_r: int = 8
    lora_alpha: float = 32
    lora_dropout: float = 0.1
    compile_layers: bool = False
    attention: str = "sdpa"
    lean_loss: bool = True
    logging_steps: int = 1
    cudnn_sdp: bool = False  # False: sdpa's cuDNN backend off, as the project's training does


REFERENCE = Recipe("(a) reference", "q_proj,k_proj,v_proj", "full", False, 4, 1024,
                   lean_loss=False, logging_steps=10, cudnn_sdp=True)
REFERENCE_NO_CUDNN = replace(REFERENCE, name="(a') reference, sdpa without cuDNN",
                             cudnn_sdp=False)
PROJECT = Recipe("(b) project defaults", DEFAULTS.target_modules, DEFAULTS.gradient_checkpointing,
                 DEFAULTS.packing, DEFAULTS.batch_size, DEFAULTS.max_length, DEFAULTS.lora_r,
                 DEFAULTS.lora_alpha, DEFAULTS.lora_dropout, compile_layers=DEFAULTS.compile,
                 attention=DEFAULTS.attention,
                 logging_steps=DEFAULTS.logging_steps)


def _variant(name: str, checkpointing: str, rows: int, length: int = 1024, **extra) -> Recipe:
    extra.setdefault("compile_layers", False)
    return replace(PROJECT, name=f"x {name}", checkpointing=checkpointing, batch_size=rows,
                   max_length=length, packing=True, **extra)


VARIANTS = {
    # packing with varlen attention (the default's attention), compiled or not, 3-8 rows
    "eager-4": _variant("varlen, 4x1024, not compiled", "full", 4, attention="varlen"),
    "eager-5": _variant("varlen, 5x1024, not compiled", "full", 5, attention="varlen"),
    "eager-6": _variant("varlen, 6x1024, not compiled", "full", 6, attention="varlen"),
    "compile-4": _variant("varlen, 4x1024, compiled", "full", 4, attention="varlen",
                          compile_layers=True),
    "compile-3": _variant("varlen, 3x1024, compiled", "full", 3, attention="varlen",
                          compile_layers=True),
    "compile-5": _variant("varlen, 5x1024, compiled", "full", 5, attention="varlen",
                          compile_layers=True),
    "compile-6": _variant("varlen, 6x1024, compiled", "full", 6, attention="varlen",
                          compile_layers=True),
    "compile-8": _variant("varlen, 8x1024, compiled", "full", 8, attention="varlen",
                          compile_layers=True),
    # other attention kernels over the flattened row
    "sdpa-4": _variant("sdpa (block mask), 4x1024, not compiled", "full", 4, attention="sdpa"),
    "cudnn-4": _variant("sdpa with cuDNN, 4x1024, not compiled", "full", 4, attention="sdpa",
                        cudnn_sdp=True),
    "flex-4": _variant("flex attention, 4x1024, not compiled", "full", 4,
                       attention="flex_attention"),
    # other checkpointing and loss choices
    "selective-2": _variant("varlen, selective ckpt, 2x1024", "selective", 2,
                            attention="varlen"),
    "no-ckpt-1": _variant("varlen, no ckpt, 1x1024", "off", 1, attention="varlen"),
    "hf-loss-4": _variant("varlen, 4x1024, transformers' loss", "full", 4, attention="varlen",
                          lean_loss=False),
}


def synthetic_examples(count: int, vocab: int, tiny: bool, seed: int = 0) -> list[Encoded]:
    """Prompt 20-200 tokens (not trained) + reply 50-500 tokens (trained)."""
    rng = random.Random(seed)
    (p_lo, p_hi), (r_lo, r_hi) = ((4, 20), (5, 50)) if tiny else ((20, 200), (50, 500))
    examples = []
    for _ in range(count):
        prompt = [rng.randrange(3, vocab) for _ in range(rng.randint(p_lo, p_hi))]
        reply = [rng.randrange(3, vocab) for _ in range(rng.randint(r_lo, r_hi))]
        examples.append(Encoded(prompt + reply, [IGNORE_INDEX] * len(prompt) + reply,
                                len(prompt) + len(reply)))
    return examples


def build_model(config: GlmConfig, recipe: Recipe, device: str, dtype: torch.dtype):
    torch.manual_seed(0)
    attention = choose_attention(recipe.attention, choose_precision("auto"), recipe.packing, print)
    if device == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(recipe.cudnn_sdp)
    config._attn_implementation = attention
    config.use_cache = False
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = GlmForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.config.use_cache = False
    enable_checkpointing(model, recipe.checkpointing)
    targets = resolve_target_modules(model, recipe.targets)
    model = apply_lora(model, recipe.lora_r, recipe.lora_alpha, recipe.lora_dropout, targets)
    if recipe.lean_loss:
        use_lean_loss(model)
    if recipe.compile_layers:
        compile_layers(model, device)
    return model, f"{targets}, attention {attention}"


class StepClock(TrainerCallback):
    """Marks (time, real tokens, slots) at the end of every optimizer step; optionally steps a
    profiler."""

    def __init__(self, trainer_ref: list, profiler=None) -> None:
        self.trainer_ref = trainer_ref
        self.profiler = profiler
        self.marks: list[tuple[float, int, int]] = []

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        trainer = self.trainer_ref[0]
        self.marks.append((time.perf_counter(), trainer.tokens_seen, trainer.slots_seen))
        if self.profiler is not None:
            self.profiler.step()


def _profiler():
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if torch.cuda.is_available() else [])
    return profile(activities=activities, schedule=schedule(wait=2, warmup=1, active=2))


def _print_profile(prof, name: str) -> None:
    sort = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    averages = prof.key_averages()
    print(f"=== profile of {name} (2 steps), by {sort}")
    print(averages.table(sort_by=sort, row_limit=22, max_name_column_width=60))
    print(f"=== profile of {name}, by self CPU time")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))


def _compile_counters() -> dict:
    """What torch.compile did so far: graphs, graph breaks, recompilations."""
    from torch._dynamo.utils import counters

    found = {k: dict(counters[k]) for k in ("stats", "graph_break", "recompiles") if counters[k]}
    counters.clear()
    return found


def run_recipe(recipe: Recipe, examples: list[Encoded], model_config: GlmConfig, tokens: int,
               warmup: int, min_steps: int, profile: bool = False) -> dict:
    precision = choose_precision("auto")
    device = "cuda" if precision.device == "cuda" else "cpu"
    started = time.perf_counter()
    model, targets = build_model(model_config, recipe, device, precision.torch_dtype)
    build_s = time.perf_counter() - started
    mean = sum(len(e.input_ids) for e in examples) / len(examples)
    per_step = recipe.batch_size * (0.95 * recipe.max_length if recipe.packing else mean)
    steps = max(min_steps, int(tokens / per_step) + 1)
    if profile:
        warmup, steps = 1, 5
    cfg = TrainConfig(max_steps=warmup + steps, batch_size=recipe.batch_size,
                      max_length=recipe.max_length, save_steps=10**9,
                      logging_steps=recipe.logging_steps)
    if recipe.packing:
        dataset = PackedDataset(examples, recipe.max_length, 42)
        collator = PackingCollator(trained_logits_only=recipe.lean_loss)
    else:
        dataset, collator = ExampleDataset(examples), PaddingCollator(0)
    with tempfile.TemporaryDirectory() as out:
        args = _training_args(cfg, Path(out), precision, has_eval=False)
        ref: list = []
        prof = _profiler() if profile else None
        clock = StepClock(ref, prof)
        trainer = _make_trainer_class()(model=model, args=args, train_dataset=dataset,
                                        data_collator=collator, callbacks=[clock])
        ref.append(trainer)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated() / GIB if device == "cuda" else 0.0
        train_start = time.perf_counter()
        if prof is not None:
            with prof:
                trainer.train()
            _print_profile(prof, recipe.name)
        else:
            trainer.train()
        compiled = _compile_counters() if recipe.compile_layers else None
        peak = torch.cuda.max_memory_allocated() / GIB if device == "cuda" else None
        reserved = torch.cuda.max_memory_reserved() / GIB if device == "cuda" else None
    marks = clock.marks[warmup - 1:]
    (t0, tok0, slot0), (t1, tok1, slot1) = marks[0], marks[-1]
    seconds = t1 - t0
    result = {
        "recipe": recipe.name, "settings": recipe.__dict__, "targets": str(targets),
        "measured_steps": len(marks) - 1, "seconds": seconds,
        "real_tokens": tok1 - tok0, "slots": slot1 - slot0,
        "real_tokens_per_s": (tok1 - tok0) / seconds, "slots_per_s": (slot1 - slot0) / seconds,
        "padding_share": 1 - (tok1 - tok0) / max(slot1 - slot0, 1),
        "step_s": seconds / max(len(marks) - 1, 1),
        "tokens_per_step": (tok1 - tok0) / max(len(marks) - 1, 1),
        "weights_gib": base_mem, "peak_alloc_gib": peak, "peak_reserved_gib": reserved,
        "build_s": build_s, "warmup_s": t0 - train_start, "compile": compiled,
    }
    trainer.callback_handler.callbacks.clear()
    ref.clear()
    del trainer, model, dataset, clock, prof
    return result


def attention_agreement(examples: list[Encoded], model_config: GlmConfig) -> dict:
    """Packed batches through the same LoRA model (eval mode: no dropout) with varlen attention,
    sdpa's block mask (efficient kernel) and sdpa's math kernel: loss and LoRA gradients. The
    math-vs-efficient difference is the noise floor of bf16 attention."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    recipe = replace(PROJECT, attention="sdpa", compile_layers=False)
    precision = choose_precision("auto")
    model, _ = build_model(model_config, recipe, "cuda", precision.torch_dtype)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # non-zero B, so that every LoRA weight gets a gradient
            torch.nn.init.normal_(param, std=0.02)
    rows = PackedDataset(examples, recipe.max_length, 42)
    batch = PackingCollator(trained_logits_only=True)([rows[i] for i in range(2)])
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    lora = [p for p in model.parameters() if p.requires_grad]
    varlen = choose_attention("varlen", precision, True)
    model.eval()
    found = {}
    for label, name, backend in (("varlen", varlen, None),
                                 ("sdpa_efficient", "sdpa", SDPBackend.EFFICIENT_ATTENTION),
                                 ("sdpa_math", "sdpa", SDPBackend.MATH)):
        model.base_model.model.config._attn_implementation = name
        with sdpa_kernel(backend) if backend is not None else torch.enable_grad():
            loss = model(**batch).loss
            grads = torch.autograd.grad(loss, lora)
        found[label] = (float(loss), torch.cat([g.float().flatten() for g in grads]))
        del loss, grads

    def rel(a: str, b: str) -> float:
        return float((found[a][1] - found[b][1]).norm() / found[b][1].norm())

    result = {"tokens": int(batch["input_ids"].numel()),
              **{f"loss_{k}": v[0] for k, v in found.items()},
              "grad_rel_diff_varlen_vs_math": rel("varlen", "sdpa_math"),
              "grad_rel_diff_efficient_vs_math": rel("sdpa_efficient", "sdpa_math")}
    found.clear()
    del model, lora
    return result


def free_memory() -> float:
    """Collect the last recipe's model (the Trainer holds reference cycles); GiB still held."""
    gc.collect()
    if not torch.cuda.is_available():
        return 0.0
    torch.cuda.empty_cache()
    return torch.cuda.memory_allocated() / GIB


def table(results: list[dict]) -> str:
    head = (f"{'recipe':44} {'real tok/s':>10} {'slots/s':>9} {'pad %':>6} {'tok/step':>8} "
            f"{'step s':>7} {'peak GiB':>8} {'resv GiB':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['recipe']:44} ERROR {r['error'][:120]}")
            continue
        peak = f"{r['peak_alloc_gib']:.2f}" if r["peak_alloc_gib"] is not None else "-"
        resv = f"{r['peak_reserved_gib']:.2f}" if r["peak_reserved_gib"] is not None else "-"
        lines.append(f"{r['recipe']:44} {r['real_tokens_per_s']:10.0f} {r['slots_per_s']:9.0f} "
                     f"{100 * r['padding_share']:6.1f} {r['tokens_per_step']:8.0f} "
                     f"{r['step_s']:7.3f} {peak:>8} {resv:>8}")
    ok = {r["recipe"]: r for r in results if "error" not in r}
    refs = [ok[n] for n in (REFERENCE.name, REFERENCE_NO_CUDNN.name) if n in ok]
    a = max(refs, key=lambda r: r["real_tokens_per_s"]) if refs else None
    b = ok.get(PROJECT.name)
    if a and b:
        lines.append(f"(a) taken as the faster reference row: {a['recipe']}")
        speed = b["real_tokens_per_s"] / a["real_tokens_per_s"]
        mem = "" if a["peak_alloc_gib"] is None else \
            f"; peak memory (b) {b['peak_alloc_gib']:.2f} GiB vs (a) {a['peak_alloc_gib']:.2f} GiB"
        goal = a["peak_alloc_gib"] is None or b["peak_alloc_gib"] <= a["peak_alloc_gib"]
        lines.append(f"(b)/(a) real tokens/s: {speed:.2f}x{mem} -> goal (>= 2x at <= peak "
                     f"memory) {'MET' if speed >= 2 and goal else 'NOT met'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run with a tiny model")
    parser.add_argument("--tokens", type=int, default=60000,
                        help="real tokens to measure per recipe (sets the step count)")
    parser.add_argument("--min-steps", type=int, default=10, help="measured steps at least")
    parser.add_argument("--warmup", type=int, default=4, help="steps before measuring")
    parser.add_argument("--records", type=int, default=3000, help="synthetic records")
    parser.add_argument("--variants", default="",
                        help=f"extra recipes: all, or a comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--profile", action="store_true",
                        help="profile 2 steps of each recipe instead of measuring")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the sdpa-vs-varlen agreement check on the GPU")
    parser.add_argument("--only", default="", help="run only these recipes: a, b, variants")
    parser.add_argument("--out", default="bench/out/train_throughput.json")
    args = parser.parse_args()
    if args.tiny:
        args.tokens, args.min_steps, args.warmup = 100, 3, 2
    model_config = glm_6b(args.tiny)
    examples = synthetic_examples(args.records, model_config.vocab_size, args.tiny)
    names = list(VARIANTS) if args.variants == "all" else \
        [v.strip() for v in args.variants.split(",") if v.strip()]
    recipes = [REFERENCE, REFERENCE_NO_CUDNN, PROJECT] + [VARIANTS[n] for n in names]
    if args.only:
        keep = {k.strip() for k in args.only.split(",")}
        recipes = [r for r, k in zip(recipes, ["a", "a'", "b", *names], strict=True)
                   if k in keep]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    import importlib.util

    import peft
    import transformers

    print(f"transformers {transformers.__version__}, peft {peft.__version__}, flash_attn "
          f"{'installed' if importlib.util.find_spec('flash_attn') else 'not installed'}")
    print(f"device: {device}; torch {torch.__version__}; model: GLM "
          f"{'tiny' if args.tiny else '6B-shaped'} random weights; {len(examples)} records, "
          f"mean {sum(len(e.input_ids) for e in examples) / len(examples):.0f} tokens; "
          f"{args.warmup} warm-up steps, then about {args.tokens} real tokens per recipe",
          flush=True)
    check = None
    if torch.cuda.is_available() and not args.no_check:
        check = attention_agreement(examples, model_config)
        print(f"attention agreement (sdpa vs varlen, one packed batch): {json.dumps(check)}",
              flush=True)
        free_memory()
    results = []
    for recipe in recipes:
        print(f"--- {recipe.name}: {recipe}", flush=True)
        try:
            result = run_recipe(recipe, examples, model_config, args.tokens, args.warmup,
                                args.min_steps, args.profile)
        except Exception as exc:  # noqa: BLE001 - one failed variant must not end the bench
            result = {"recipe": recipe.name, "error": f"{type(exc).__name__}: {exc}"}
        left = free_memory()
        if left > 0.5:
            print(f"warning: {left:.1f} GiB still allocated after {recipe.name}", flush=True)
        print(json.dumps(result), flush=True)
        results.append(result)
    report = table(results)
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "torch": torch.__version__, "check": check,
                               "host": platform.node(), "results": results,
                               "table": report}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
