"""The runs registry (read from disk), the launcher's commands, and run settings (YAML, flags)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.training import registry, run_files, runner
from backend.training.cli import build_parser, resolve_config
from backend.training.config import TrainConfig, config_from_mapping, load_yaml, save_yaml
from backend.training.errors import TrainingError


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def make_run(root: Path, name: str, created: float, **status) -> Path:
    path = root / name
    path.mkdir(parents=True)
    run_files.write_json(path / run_files.LAUNCH_FILE, {"created_at": created, "pid": None})
    if status:
        run_files.write_status(path, status.pop("state"), **status)
    return path


def test_runs_are_read_from_disk_newest_first(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "a-old", 100.0, state="completed", exit_code=0, reason="trained 5 steps")
    make_run(root, "b-new", 200.0, state="failed", exit_code=2, reason="bad.jsonl: record 2")
    (root / "_datasets").mkdir()
    (root / "not-a-run").mkdir()
    runs = registry.list_runs(root)
    assert [r.run_id for r in runs] == ["b-new", "a-old"]
    assert runs[0].state == "failed" and runs[0].reason == "bad.jsonl: record 2"
    assert runs[1].state == "completed" and runs[1].progress == 1.0 and not runs[1].active


def test_a_run_whose_process_is_gone_is_failed_or_stopped(tmp_path):
    root = tmp_path / "runs"
    crashed = make_run(root, "crashed", 1.0, state="running", pid=dead_pid())
    assert registry.read_run(crashed).state == "failed"
    assert "ended without reporting" in registry.read_run(crashed).reason

    stopped = make_run(root, "stopped", 2.0, state="starting")
    run_files.write_json(stopped / run_files.LAUNCH_FILE,
                         {"created_at": 2.0, "pid": dead_pid(), "stop_requested_at": 3.0})
    assert registry.read_run(stopped).state == "stopped"


def test_a_live_process_keeps_its_run_active_and_can_be_stopped(tmp_path):
    root = tmp_path / "runs"
    path = make_run(root, "live", 1.0, state="running")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True)
    try:
        run_files.write_json(path / run_files.LAUNCH_FILE,
                             {"created_at": 1.0, "pid": proc.pid, "pgid": proc.pid})
        run = registry.read_run(path)
        assert run.active and run.state == "running"
        with pytest.raises(TrainingError, match="still running"):
            runner.delete(path, root)
        assert runner.stop(path)
        assert proc.wait(timeout=30) == -15  # SIGTERM reached the process group
        assert registry.read_run(path).state == "stopped"
    finally:
        proc.kill()
        proc.wait()


def test_progress_eta_and_metrics(tmp_path):
    path = make_run(tmp_path, "r", 1.0, state="completed")
    now = time.time()
    for step in (1, 2):
        run_files.append_metrics(path, {"step": step, "max_steps": 8, "loss": 2.0 / step,
                                        "eta_s": 60.0, "time": now})
    run_files.append_metrics(path, {"step": 2, "eval_loss": 1.5})
    with open(path / run_files.METRICS_FILE, "a") as handle:
        handle.write('{"step": 3, "lo')  # a line being written is skipped
    run = registry.read_run(path)
    assert run.step == 2 and run.max_steps == 8 and run.progress == 0.25
    assert run.last_metrics["loss"] == 1.0
    run_files.drop_metrics_after(path, 1)
    assert [r["step"] for r in run_files.read_metrics(path)] == [1]


def test_log_tail_and_delete(tmp_path):
    root = tmp_path / "runs"
    path = make_run(root, "done", 1.0, state="completed")
    (path / run_files.LOG_FILE).write_text("".join(f"line {i}\n" for i in range(5000)))
    tail = registry.log_tail(path, max_bytes=200)
    assert tail.endswith("line 4999\n") and tail.startswith("line ") and len(tail) <= 200
    with pytest.raises(TrainingError, match="not a run folder"):
        runner.delete(tmp_path, root)
    (root / "plain").mkdir()
    with pytest.raises(TrainingError, match="does not look like a run folder"):
        runner.delete(root / "plain", root)
    runner.delete(path, root)
    assert not path.exists() and (root / "plain").exists()


def test_runs_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert registry.runs_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("WORKBENCH_RUNS_DIR")
    assert registry.runs_root() == runner.REPO_ROOT / "runs"


def test_launcher_commands():
    config = TrainConfig(data="d.jsonl", output_dir="/r", learning_rate=1e-3, packing=False)
    argv = runner.config_argv(config)
    assert argv[:8] == ["--model", "default", "--data", "d.jsonl", "--output-dir", "/r",
                        "--learning-rate", "0.001"]
    assert "--no-packing" in argv and "--lora-r" not in argv  # defaults are left out
    assert resolve_config(build_parser().parse_args(argv)) == config  # the flags round-trip

    assert runner.training_command(["--x"], None, "py") == ["py", "-m", "backend.training", "--x"]
    assert runner.training_command(["--x"], [3], "py")[:3] == ["py", "-m", "backend.training"]
    ddp = runner.training_command(["--x"], [0, 2], "py")
    assert ddp == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                   "-m", "backend.training", "--x"]
    assert runner.visible_devices(None) is None and runner.visible_devices([]) == ""
    assert runner.command_line(["py", "a b"], "0,2") == "CUDA_VISIBLE_DEVICES=0,2 py 'a b'"


def test_settings_precedence_yaml_and_errors(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_yaml(TrainConfig(data="saved.jsonl", output_dir=str(run_dir), lora_r=16, max_steps=50),
              run_dir / "run_config.yaml")
    extra = tmp_path / "extra.yaml"
    extra.write_text("lora-alpha: 64\nmax_steps: 80\npacking: false\n")
    args = build_parser().parse_args(["--output-dir", str(run_dir), "--resume", "latest",
                                      "--config", str(extra), "--max-steps", "90"])
    config = resolve_config(args)
    assert (config.data, config.lora_r, config.lora_alpha, config.max_steps, config.packing) == \
        ("saved.jsonl", 16, 64.0, 90, False)
    assert load_yaml(run_dir / "run_config.yaml")["lora_r"] == 16

    with pytest.raises(TrainingError, match="Unknown setting 'lora_rank'"):
        config_from_mapping({"lora_rank": 4})
    with pytest.raises(TrainingError, match="lora_r must be int"):
        config_from_mapping({"lora_r": "eight"})
    with pytest.raises(TrainingError, match="batch_size must be at least 1"):
        config_from_mapping({"batch_size": 0})
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora_r: [1\n")
    with pytest.raises(TrainingError, match="not valid YAML"):
        load_yaml(bad)
    with pytest.raises(TrainingError, match="Config file not found"):
        load_yaml(tmp_path / "none.yaml")
