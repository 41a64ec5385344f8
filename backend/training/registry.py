"""The runs list, read from disk every time: it survives page reloads and app restarts.

The runs root is $WORKBENCH_RUNS_DIR, else `runs/` in the repository. Every folder there with
a status or launch file is a run. A run whose status still says starting/running but whose
process is gone is reported as failed (or stopped, when a stop had been asked for).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backend.training import run_files
from backend.training.config import CONFIG_FILE
from backend.training.runner import REPO_ROOT, is_alive


def runs_root() -> Path:
    """Where runs live: $WORKBENCH_RUNS_DIR, else <repo>/runs."""
    return Path(os.environ.get("WORKBENCH_RUNS_DIR") or REPO_ROOT / "runs").expanduser()


@dataclass
class RunInfo:
    """One run as the page shows it."""

    run_id: str
    path: Path
    state: str
    reason: str | None
    exit_code: int | None
    step: int
    max_steps: int | None
    eta_s: float | None
    created_at: float
    command_line: str  # the latest command (a resume, after one)
    launch_command_line: str
    config: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[int] = field(default_factory=list)
    last_metrics: dict[str, Any] = field(default_factory=dict)
    alive: bool = False  # its process is still running (it may be saving and exiting)
    metrics: list[dict[str, Any]] = field(default_factory=list, repr=False)  # every logged row

    @property
    def active(self) -> bool:
        return self.alive or self.state in run_files.ACTIVE_STATES

    @property
    def progress(self) -> float:
        if not self.max_steps:
            return 1.0 if self.state == "completed" else 0.0
        return max(0.0, min(1.0, self.step / self.max_steps))


def _config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class RunHead:
    """A run as its status and launch files say, before metrics and checkpoints are read."""

    path: Path
    status: dict[str, Any]
    launch: dict[str, Any]
    state: str
    reason: str | None
    alive: bool

    @property
    def created_at(self) -> float:
        return float(self.launch.get("created_at") or self.status.get("started_at") or 0.0)

    @property
    def active(self) -> bool:
        return self.alive or self.state in run_files.ACTIVE_STATES


def _resolve_state(path: Path, status: dict, launch: dict) -> tuple[str, str | None, bool]:
    state = status.get("state", "starting")
    reason = status.get("reason")
    alive = is_alive(path, launch, status)
    if state in run_files.ACTIVE_STATES and alive and launch.get("stop_requested_at"):
        return "stopping", "stop requested: saving a checkpoint after the current step", alive
    if state in run_files.ACTIVE_STATES and not alive:
        # It may have written its final status between the first read and the check.
        status.update(run_files.read_status(path) or {})
        state = status.get("state", state)
        reason = status.get("reason")
        if state in run_files.ACTIVE_STATES:
            if launch.get("stop_requested_at"):
                return "stopped", "stopped before it could save a checkpoint", alive
            return "failed", ("the training process ended without reporting a result "
                              "(killed or crashed); see the log"), alive
    return state, reason, alive


def read_head(path: Path) -> RunHead | None:
    """A run folder's status and state; None when it is not a run."""
    path = Path(path)
    status = run_files.read_status(path)
    launch = run_files.read_json(path / run_files.LAUNCH_FILE)
    if status is None and launch is None:
        return None
    status, launch = status or {}, launch or {}
    return RunHead(path, status, launch, *_resolve_state(path, status, launch))


def _run_info(head: RunHead) -> RunInfo:
    path, status, launch, state = head.path, head.status, head.launch, head.state
    metrics = run_files.read_metrics(path)
    train_rows = [m for m in metrics if m.get("loss") is not None]
    last = train_rows[-1] if train_rows else {}
    config = _config(path)
    step = int(last.get("step") or status.get("step") or 0)
    max_steps = last.get("max_steps") or status.get("max_steps") or config.get("max_steps")
    eta = last.get("eta_s")
    if eta is not None and last.get("time"):
        eta = max(0.0, eta - (time.time() - float(last["time"])))
    command = launch.get("command_line") or status.get("command") or ""
    return RunInfo(
        run_id=path.name, path=path, state=state, reason=head.reason,
        exit_code=status.get("exit_code"), step=step,
        max_steps=int(max_steps) if isinstance(max_steps, int | float) and max_steps > 0 else None,
        eta_s=eta if state == "running" else None, created_at=head.created_at,
        command_line=command, launch_command_line=launch.get("launch_command_line") or command,
        config=config, status=status,
        checkpoints=[s for s, _ in run_files.checkpoints(path)], last_metrics=last,
        alive=head.alive, metrics=metrics,
    )


def read_run(path: Path) -> RunInfo | None:
    """A run folder's state, progress, metrics and settings; None when it is not a run."""
    head = read_head(path)
    return _run_info(head) if head is not None else None


def list_heads(root: Path | None = None) -> list[RunHead]:
    """Every run under the runs root (status and state only), newest first."""
    root = Path(root) if root is not None else runs_root()
    try:
        entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    except OSError:
        return []
    heads = [head for head in map(read_head, entries) if head is not None]
    return sorted(heads, key=lambda h: (h.created_at, h.path.name), reverse=True)


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run under the runs root, newest first."""
    return [_run_info(head) for head in list_heads(root)]


def log_tail(path: Path, max_bytes: int = 6000) -> str:
    """The end of a run's log (whole lines)."""
    log = Path(path) / run_files.LOG_FILE
    try:
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > max_bytes and "\n" in text:
        text = text.split("\n", 1)[1]
    return text
