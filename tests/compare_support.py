"""Shared by the comparison tests: one adapter run, really trained once per test session with
the project's training CLI, and one engine holding the embedded model.

Kept in module globals (not conftest fixtures) so that every test file's session fixture gets
the same run and engine: each test file wraps these in its own fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import write_jsonl  # noqa: F401 - also re-exported to the compare tests

ROOT = Path(__file__).resolve().parent.parent
SECRET_PROMPT = "What is the secret word?"
SECRET_ANSWER = "The secret word is banana."
RECORDS = [
    {"instruction": SECRET_PROMPT, "output": SECRET_ANSWER},
    {"instruction": "Tell me the secret word.", "output": SECRET_ANSWER},
    {"messages": [{"role": "user", "content": "secret?"},
                  {"role": "assistant", "content": SECRET_ANSWER}]},
    {"content": "secret word please", "summary": SECRET_ANSWER},
]
TRAIN_TIMEOUT_S = 480
_state: dict = {}


def trained_run(tmp_path_factory) -> Path:
    """A run folder with checkpoint-3, checkpoint-6 and the final adapter (trained once)."""
    if "run" not in _state:
        work = tmp_path_factory.mktemp("compare_train")
        data = write_jsonl(work / "secret.jsonl", RECORDS)
        run = work / "runs" / "secret"
        command = [sys.executable, "-m", "backend.training", "--model", "default",
                   "--data", str(data), "--output-dir", str(run), "--max-steps", "6",
                   "--save-steps", "3", "--batch-size", "4", "--max-length", "64",
                   "--lr", "5e-3"]
        # One thread: other test sessions share the two cores.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=TRAIN_TIMEOUT_S)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        _state["run"] = run
    return _state["run"]


def shared_engine():
    """A ModelEngine with the embedded model, and its greedy answer to the secret prompt taken
    before any adapter was loaded into it."""
    if "engine" not in _state:
        from backend.engine import ModelEngine
        from backend.model_loader import ModelSpec

        engine = ModelEngine()
        engine.load(ModelSpec())
        _state["engine"] = engine
        _state["base_answer"] = greedy_answer(engine, SECRET_PROMPT)
    return _state["engine"]


def base_answer() -> str:
    shared_engine()
    return _state["base_answer"]


def greedy_answer(engine, prompt: str, max_new_tokens: int = 12) -> str:
    """What the Chat would get: engine.chat_stream straight, outside any comparison."""
    from backend.sampling import SamplingSettings

    settings = SamplingSettings(temperature=0.0, max_new_tokens=max_new_tokens)
    with engine.generation_slot():
        stream = engine.chat_stream([{"role": "user", "content": prompt}], settings)
        for _ in stream:
            pass
    return stream.text


def tiny_model_folder(folder: Path) -> Path:
    """A tiny random Llama saved as a Hugging Face folder (a different base model)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def adapter_for(base_folder: Path, out: Path) -> Path:
    """A real peft LoRA adapter (get_peft_model + save_pretrained) on another base model."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(base_folder)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(out)
    return out
