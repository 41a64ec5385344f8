"""The multi-GPU launch path for real: two GPUs, DDP under torchrun, through the project's runner.

It makes a small random-weight Llama-style model (with a word-level tokenizer and a ChatML chat
template; the embedded model's weights do not travel to GPU machines) and a chat data file,
then, through `backend.training.runner` exactly as the page does:

1. launches a run on GPUs 0 and 1 (CUDA_VISIBLE_DEVICES=0,1, torchrun --nproc_per_node=2);
2. stops it with SIGTERM to its process group once it has trained a few steps;
3. resumes it from the latest checkpoint for 5 more steps;

and prints the commands, the status files, the metrics and the log.

    PYTHONPATH=. python bench/ddp_check.py [--gpus 0,1]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from backend.training import registry, run_files, runner
from backend.training.config import TrainConfig

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")
WORDS = [f"w{i}" for i in range(2000)]


def make_model(folder: Path) -> None:
    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS + ["\n", "system", "user", "assistant"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                   bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>")
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=256, intermediate_size=688,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, bos_token_id=1, eos_token_id=2,
                         pad_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)


def make_data(path: Path, count: int = 400) -> None:
    rng = random.Random(0)
    lines = []
    for _ in range(count):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
        reply = " ".join(WORDS[:rng.randint(5, 60)])  # learnable: a fixed counting pattern
        lines.append(json.dumps({"conversations": [{"role": "user", "content": prompt},
                                                   {"role": "assistant", "content": reply}]}))
    path.write_text("\n".join(lines) + "\n")


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def show(run_dir: Path, title: str) -> registry.RunInfo:
    run = registry.read_run(run_dir)
    print(f"\n===== {title}: state={run.state} exit={run.exit_code} step={run.step}/"
          f"{run.max_steps} checkpoints={run.checkpoints}")
    print(f"reason: {run.reason}")
    print(f"status.json: {json.dumps(run.status, indent=1)}")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpus", default="0,1")
    args = parser.parse_args()
    gpus = [int(g) for g in args.gpus.split(",")]
    print(f"torch {torch.__version__}, visible GPUs: {torch.cuda.device_count()}: "
          f"{[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_model(tmp / "model")
        make_data(tmp / "train.jsonl")
        make_data(tmp / "val.jsonl", 40)
        config = TrainConfig(model=str(tmp / "model"), data=str(tmp / "train.jsonl"),
                             val_data=str(tmp / "val.jsonl"), max_steps=2000, batch_size=2,
                             max_length=256, learning_rate=1e-3, save_steps=1000, eval_steps=10)
        run_dir = runner.launch(config, tmp / "runs", gpus=gpus)
        print(f"launched: {registry.read_run(run_dir).command_line}")
        wait(lambda: any(r.get("step", 0) >= 15 for r in run_files.read_metrics(run_dir))
             or not registry.read_run(run_dir).active, 300, "15 steps")
        print("stopping: SIGTERM to the process group", flush=True)
        runner.stop(run_dir)
        wait(lambda: not registry.read_run(run_dir).active, 120, "the stop")
        run = show(run_dir, "after stop")
        if run.checkpoints:
            runner.resume(run_dir, "latest", max_steps=run.checkpoints[-1] + 5)
            print(f"resumed: {registry.read_run(run_dir).command_line}")
            wait(lambda: not registry.read_run(run_dir).active, 300, "the resumed run")
            show(run_dir, "after resume")
        rows = run_files.read_metrics(run_dir)
        print("\nmetrics (step, loss, eval_loss, tokens/s, GPU peak GiB):")
        for r in rows:
            print(f"  {r['step']:4d} {r.get('loss')} {r.get('eval_loss')} "
                  f"{r.get('tokens_per_s')} {r.get('gpu_peak_gib')}")
        print("\n===== train.log\n" + registry.log_tail(run_dir, 20000))


if __name__ == "__main__":
    main()
