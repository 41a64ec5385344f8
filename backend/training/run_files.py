"""The files of a run folder, shared by the trainer (writer), the launcher and the runs registry.

    <run>/status.json        state (starting, running, completed, failed, stopped), exit, reason
    <run>/metrics.jsonl      one JSON line per logged step, written while training runs
    <run>/run_config.yaml    the run's settings
    <run>/command.txt        the exact command
    <run>/launch.json        the launcher's record: pid, process group, command, GPUs
    <run>/train.log          stdout and stderr of the run
    <run>/checkpoint-N/      adapter_config.json, adapter weights, trainer_state.json, optimizer...
    <run>/adapter_config.json, adapter_model.safetensors   the final adapter
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from backend.json_files import read_json, write_atomic, write_json

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
COMMAND_FILE = "command.txt"
LAUNCH_FILE = "launch.json"
LOG_FILE = "train.log"
ACTIVE_STATES = ("starting", "running", "stopping")
FINAL_STATES = ("completed", "failed", "stopped")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def format_eta(seconds: float | None) -> str:
    """H:MM:SS, or ? while unknown."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def read_status(run_dir: Path) -> dict[str, Any] | None:
    return read_json(Path(run_dir) / STATUS_FILE)


def write_status(run_dir: Path, state: str, **fields: Any) -> dict[str, Any]:
    """Update the status file (fields not given keep their value)."""
    path = Path(run_dir) / STATUS_FILE
    status = read_json(path) or {}
    status.update(fields)
    status["state"] = state
    status["updated_at"] = time.time()
    if state in FINAL_STATES:
        status.setdefault("ended_at", time.time())
    else:
        status.pop("ended_at", None)
    write_json(path, status)
    return status


def append_metrics(run_dir: Path, entry: dict[str, Any]) -> None:
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete metrics line (a line being written is skipped)."""
    try:
        text = (Path(run_dir) / METRICS_FILE).read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def drop_metrics_after(run_dir: Path, step: int) -> None:
    """On resume: forget metrics of steps after the checkpoint (they will be trained again)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return
    kept = [r for r in read_metrics(run_dir) if int(r.get("step", 0)) <= step]
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept).encode("utf-8"))


def is_complete_checkpoint(path: Path) -> bool:
    return (path / "trainer_state.json").is_file() and (path / "adapter_config.json").is_file()


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    found = []
    try:
        entries = list(Path(run_dir).iterdir())
    except OSError:
        return []
    for entry in entries:
        match = _CHECKPOINT.match(entry.name)
        if match and entry.is_dir() and is_complete_checkpoint(entry):
            found.append((int(match.group(1)), entry))
    return sorted(found)


def find_checkpoint(run_dir: Path, which: str | int) -> Path | None:
    """`latest` or a step number; None when there is no such complete checkpoint."""
    found = checkpoints(run_dir)
    if not found:
        return None
    if str(which) == "latest":
        return found[-1][1]
    step = int(which)
    return next((path for s, path in found if s == step), None)


def has_final_adapter(run_dir: Path) -> bool:
    return (Path(run_dir) / "adapter_config.json").is_file()
