"""Real training runs of the embedded model, launched as subprocesses through the runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import stop_active_runs, wait_until, write_jsonl

from backend.training import registry, run_files, runner
from backend.training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
# One thread per run: on a shared 2-core machine, two threads fighting other tests is ~10x slower.
ENV = {"OMP_NUM_THREADS": "1"}
RECORDS = [
    {"instruction": "Say the secret word.", "input": "", "output": "The secret word is banana."},
    {"instruction": "What is the secret word?", "output": "The secret word is banana."},
    {"prompt": "Tell me the secret word.", "response": "The secret word is banana."},
    {"content": "secret word please", "summary": "The secret word is banana."},
    {"messages": [{"role": "user", "content": "secret?"},
                  {"role": "assistant", "content": "The secret word is banana."}]},
    {"conversations": [{"role": "user", "content": "Give me the secret."},
                       {"role": "assistant", "content": "The secret word is banana."}]},
]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    return wait_until(predicate, timeout, interval, what)


def finished(run_dir: Path, timeout: float = 600) -> registry.RunInfo:
    def done():
        run = registry.read_run(run_dir)
        return run if run is not None and not run.active else None
    try:
        return wait_for(done, timeout, f"{run_dir.name} to finish")
    except AssertionError:
        runner.stop(run_dir, force=True)
        raise AssertionError(registry.log_tail(run_dir)) from None


@pytest.fixture(autouse=True)
def no_run_left_behind(tmp_path):
    """A failed test must not leave a run training: kill what is still active."""
    yield
    stop_active_runs(tmp_path / "runs")


@pytest.fixture
def data_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "secret.jsonl", RECORDS)


def small(data: Path, **changes) -> TrainConfig:
    base = dict(data=str(data), batch_size=2, max_length=128, learning_rate=1e-3,
                save_steps=10, max_steps=20)
    return TrainConfig(**{**base, **changes})


def test_twenty_steps_write_loadable_checkpoints_and_loss_goes_down(tmp_path, data_file):
    from backend.default_model import ensure_default_model
    from backend.model_loader import ModelSpec, load_model

    run_dir = runner.launch(small(data_file), tmp_path / "runs", extra_env=ENV)
    run = finished(run_dir)
    assert run.state == "completed", registry.log_tail(run_dir)
    assert run.exit_code == 0 and run.step == 20 and run.progress == 1.0
    assert run.checkpoints == [10, 20]
    base = str(ensure_default_model())
    for step in (10, 20):
        ckpt = run_dir / f"checkpoint-{step}"
        for name in ("adapter_config.json", "adapter_model.safetensors", "trainer_state.json",
                     "optimizer.pt", "scheduler.pt"):
            assert (ckpt / name).is_file(), name
        assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == step
        assert json.loads((ckpt / "adapter_config.json").read_text())[
            "base_model_name_or_path"] == base
    for name in ("adapter_config.json", "adapter_model.safetensors", "run_config.yaml",
                 "command.txt", run_files.LOG_FILE, run_files.LAUNCH_FILE):
        assert (run_dir / name).is_file(), name
    assert "-m backend.training" in (run_dir / "command.txt").read_text()

    rows = [r for r in run_files.read_metrics(run_dir) if r.get("loss") is not None]
    assert [r["step"] for r in rows] == list(range(1, 21))
    for key in ("lr", "grad_norm", "epoch", "eta_s", "elapsed_s"):
        assert rows[-1][key] is not None, key
    assert rows[0]["eta_s"] is None  # the first step (warm-up, compilation) sets no pace
    assert all(r["tokens_per_s"] > 0 for r in rows)
    assert "gpu_mem_gib" in rows[-1]
    first = sum(r["loss"] for r in rows[:5]) / 5
    last = sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.5 * first, (first, last)

    loaded = load_model(ModelSpec(path=str(run_dir / "checkpoint-20")))
    assert loaded.adapter_path == str(run_dir / "checkpoint-20")
    tok = loaded.tokenizer
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the secret word?"}],
                                  add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)["input_ids"]
    out = loaded.model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "banana" in tok.decode(out[0, ids.shape[1]:])


def test_stop_saves_a_checkpoint_and_resume_continues_at_the_next_step(tmp_path, data_file):
    run_dir = runner.launch(small(data_file, max_steps=500, save_steps=200, batch_size=1),
                            tmp_path / "runs", extra_env=ENV)
    wait_for(lambda: any(r.get("step", 0) >= 2 for r in run_files.read_metrics(run_dir)),
             300, "two training steps")
    assert registry.read_run(run_dir).state == "running"
    assert runner.stop(run_dir)  # SIGTERM to the process group
    run = finished(run_dir, 120)
    assert run.state == "stopped", registry.log_tail(run_dir)
    assert run.exit_code == 0 and "SIGTERM" in run.reason
    stopped_at = run.checkpoints[-1]
    assert stopped_at >= 2 and run.step == stopped_at
    state = json.loads((run_dir / f"checkpoint-{stopped_at}" / "trainer_state.json").read_text())
    assert state["global_step"] == stopped_at
    assert not (run_dir / "adapter_config.json").exists()  # no final adapter for a stopped run

    runner.resume(run_dir, "latest", max_steps=stopped_at + 2, extra_env=ENV)
    run = finished(run_dir)
    assert run.state == "completed", registry.log_tail(run_dir)
    steps = [r["step"] for r in run_files.read_metrics(run_dir) if r.get("loss") is not None]
    assert steps == list(range(1, stopped_at + 3))
    assert run.checkpoints[-1] == stopped_at + 2
    assert f"resuming from checkpoint-{stopped_at} (step {stopped_at})" in \
        registry.log_tail(run_dir, 20000)
    history = json.loads((run_dir / run_files.LAUNCH_FILE).read_text())["history"]
    assert [h["action"] for h in history] == ["launch", "resume latest"]


def test_bad_data_and_missing_model_fail_with_the_reason(tmp_path, data_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c", "response"\n')
    root = tmp_path / "runs"
    bad_run = runner.launch(small(bad), root, name="bad-data", extra_env=ENV)
    no_model = runner.launch(small(data_file, model=str(tmp_path / "no-such-model")), root,
                             name="no-model", extra_env=ENV)
    for run_dir, expected in ((bad_run, "bad.jsonl: record 2, line 2: malformed JSON"),
                              (no_model, "Base model folder not found")):
        run = finished(run_dir, 300)
        assert run.state == "failed" and run.exit_code == 2
        assert expected in run.reason
        assert run.checkpoints == [] and not (run_dir / "adapter_config.json").exists()
        assert "Traceback" not in registry.log_tail(run_dir)


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.training", *args], cwd=ROOT,
                          env={**os.environ, **ENV, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=timeout)


def test_cli_validate_only_and_bad_settings(tmp_path, data_file):
    good = cli("--data", str(data_file), "--validate-only", "--max-length", "128")
    assert good.returncode == 0, good.stderr
    assert "6 record(s)" in good.stdout and "OK" in good.stdout

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"conversations": [{"role": "user", '
                   '"content": "x"}]}\n')
    result = cli("--data", str(bad), "--validate-only")
    assert result.returncode == 2
    assert "bad.jsonl: record 2, line 2: no assistant turn" in result.stdout

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    result = cli("--data", str(data_file), "--output-dir", str(blocked / "run"))
    assert result.returncode == 2 and "Cannot write to the output folder" in result.stderr
    assert "Traceback" not in result.stderr

    result = cli("--data", str(data_file), "--output-dir", str(tmp_path / "r"),
                 "--lora-dropout", "1.5")
    assert result.returncode == 2 and "lora_dropout must be in [0, 1)" in result.stderr
    assert not (tmp_path / "r").exists()


def test_several_gpus_run_the_cli_under_torchrun(tmp_path, data_file):
    """The DDP launch path, on the CPU (gloo): two processes, one result."""
    import torch

    if torch.cuda.device_count() == 1:
        pytest.skip("needs no GPU (gloo on the CPU) or at least two")
    run_dir = runner.launch(small(data_file, max_steps=3, batch_size=1, save_steps=3),
                            tmp_path / "runs", gpus=[0, 1], extra_env=ENV)
    run = finished(run_dir)
    assert run.command_line.startswith("CUDA_VISIBLE_DEVICES=0,1 ")
    assert "-m torch.distributed.run --standalone --nproc_per_node=2 -m backend.training" \
        in run.command_line
    assert run.state == "completed", registry.log_tail(run_dir)
    assert run.status["world_size"] == 2 and run.checkpoints == [3]
