"""Launching, stopping, resuming and deleting training runs as subprocesses.

A run is `python -m backend.training ...` in its own process group (start_new_session), with
stdout and stderr appended to `<run>/train.log` (never a pipe: a run keeps going when nobody
watches). CUDA_VISIBLE_DEVICES comes from the GPU pick; with more than one GPU the same CLI runs
under torchrun (DDP, one process per GPU). Stop signals the whole process group.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import psutil

from backend.training import run_files
from backend.training.config import TrainConfig
from backend.training.errors import TrainingError

REPO_ROOT = Path(__file__).resolve().parents[2]
ALWAYS_FLAGS = ("model", "data", "output_dir", "max_steps")
_children: dict[int, subprocess.Popen] = {}  # runs started by this process, for reaping


def config_argv(config: TrainConfig) -> list[str]:
    """CLI flags for a config: the main ones always, the others when not at their default."""
    defaults = TrainConfig()
    argv: list[str] = []
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if f.name not in ALWAYS_FLAGS and value == getattr(defaults, f.name):
            continue
        if value is None or value == "":
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(value, bool):
            argv.append(flag if value else f"--no-{f.name.replace('_', '-')}")
        else:
            argv += [flag, str(value)]
    return argv


def training_command(cli_args: list[str], gpus: list[int] | None,
                     python: str = sys.executable) -> list[str]:
    """Plain python for the CPU or one GPU; torchrun (DDP) for several GPUs."""
    if gpus and len(gpus) > 1:
        return [python, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={len(gpus)}", "-m", "backend.training", *cli_args]
    return [python, "-m", "backend.training", *cli_args]


def visible_devices(gpus: list[int] | None) -> str | None:
    """CUDA_VISIBLE_DEVICES for a GPU pick: None leaves it as is; [] hides every GPU."""
    if gpus is None:
        return None
    return ",".join(str(int(g)) for g in gpus)


def command_line(command: list[str], devices: str | None) -> str:
    """The command as a shell line, with its CUDA_VISIBLE_DEVICES."""
    line = shlex.join(command)
    return f"CUDA_VISIBLE_DEVICES={shlex.quote(devices)} {line}" if devices is not None else line


def new_run_dir(root: Path, name: str = "") -> Path:
    """A fresh folder name under `root`: time stamp plus a slug of `name`."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:40] or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{stamp}-{slug}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{slug}-{n}"
    return path


def _spawn(run_dir: Path, command: list[str], devices: str | None,
           extra_env: dict[str, str] | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # the pick uses NVML (PCI bus) indices
    with open(run_dir / run_files.LOG_FILE, "ab") as log:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _children[proc.pid] = proc
    return proc


def _record_launch(run_dir: Path, proc: subprocess.Popen, command: list[str],
                   devices: str | None, gpus: list[int] | None, action: str) -> None:
    path = run_dir / run_files.LAUNCH_FILE
    record = run_files.read_json(path) or {"created_at": time.time(), "history": []}
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = None
    record.update({
        "pid": proc.pid, "pgid": proc.pid, "pid_create_time": created,
        "command": command, "command_line": command_line(command, devices),
        "gpus": gpus, "cuda_visible_devices": devices, "cwd": str(REPO_ROOT),
        "launcher": "torchrun" if gpus and len(gpus) > 1 else "python",
        "stop_requested_at": None,
    })
    record.setdefault("launch_command_line", record["command_line"])
    record["history"].append({"action": action, "time": time.time(), "pid": proc.pid,
                              "command_line": record["command_line"]})
    run_files.write_json(path, record)


def _start(run_dir: Path, cli_args: list[str], gpus: list[int] | None,
           extra_env: dict[str, str] | None, action: str) -> None:
    """Start the training CLI for `run_dir` (a launch or a resume) and record it."""
    command = training_command(cli_args, gpus)
    devices = visible_devices(gpus)
    # pid None: a previous process's pid must not make the new one look like a second run.
    run_files.write_status(run_dir, "starting", reason=None, exit_code=None, pid=None)
    proc = _spawn(run_dir, command, devices, extra_env)
    _record_launch(run_dir, proc, command, devices, gpus, action)


def launch(config: TrainConfig, runs_root: Path, gpus: list[int] | None = None, name: str = "",
           extra_env: dict[str, str] | None = None) -> Path:
    """Start a new run under `runs_root`; returns its folder."""
    runs_root = Path(runs_root).expanduser()
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
        run_dir = new_run_dir(runs_root, name or Path(config.data).stem)
        run_dir.mkdir()
    except OSError as exc:
        raise TrainingError(f"Cannot create a run folder in {runs_root}: "
                            f"{exc.strerror or exc}") from None
    config = config.replace(output_dir=str(run_dir))
    _start(run_dir, config_argv(config), gpus, extra_env, "launch")
    return run_dir


def _run_pid(run_dir: Path, launch: dict | None = None,
             status: dict | None = None) -> tuple[int | None, float | None]:
    """The run's top process: the launcher's record, else the pid the trainer wrote (CLI runs).
    `launch` and `status`: the files' contents when the caller has read them already."""
    if launch is None:
        launch = run_files.read_json(Path(run_dir) / run_files.LAUNCH_FILE) or {}
    pid = launch.get("pid")
    if isinstance(pid, int):
        return pid, launch.get("pid_create_time")
    if status is None:
        status = run_files.read_status(run_dir) or {}
    pid = status.get("pid")
    return (pid, None) if isinstance(pid, int) else (None, None)


def is_alive(run_dir: Path, launch: dict | None = None, status: dict | None = None) -> bool:
    """True while the run's process is running (zombies and reused pids are not)."""
    pid, expected = _run_pid(run_dir, launch, status)
    if pid is None:
        return False
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return expected is None or abs(proc.create_time() - expected) < 1.0
    except psutil.Error:
        return False


def _signal_group(run_dir: Path, sig: int, launch: dict) -> bool:
    pgid = launch.get("pgid")
    if not isinstance(pgid, int) or not is_alive(run_dir, launch):
        return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop(run_dir: Path, force: bool = False) -> bool:
    """SIGTERM the run's process group (it saves a checkpoint and exits); SIGKILL with force."""
    run_dir = Path(run_dir)
    path = run_dir / run_files.LAUNCH_FILE
    record = run_files.read_json(path)
    if record is None:
        return False
    record["stop_requested_at"] = time.time()
    run_files.write_json(path, record)
    return _signal_group(run_dir, signal.SIGKILL if force else signal.SIGTERM, record)


def resume(run_dir: Path, checkpoint: str = "latest", max_steps: int | None = None,
           gpus: list[int] | None = None, extra_env: dict[str, str] | None = None) -> None:
    """Continue a stopped or failed run from a checkpoint, with its saved settings."""
    run_dir = Path(run_dir)
    if is_alive(run_dir):
        raise TrainingError("This run is still running; stop it first.")
    if run_files.find_checkpoint(run_dir, checkpoint) is None:
        raise TrainingError(f"No checkpoint {checkpoint} to resume from in {run_dir.name}.")
    launch_info = run_files.read_json(run_dir / run_files.LAUNCH_FILE) or {}
    if gpus is None:
        gpus = launch_info.get("gpus")
    args = ["--output-dir", str(run_dir), "--resume", str(checkpoint)]
    if max_steps is not None:
        args += ["--max-steps", str(int(max_steps))]
    _start(run_dir, args, gpus, extra_env, f"resume {checkpoint}")


def delete(run_dir: Path, runs_root: Path) -> None:
    """Remove a finished run's folder (only folders inside `runs_root` that hold a run)."""
    run_dir, runs_root = Path(run_dir).resolve(), Path(runs_root).resolve()
    if run_dir.parent != runs_root:
        raise TrainingError(f"{run_dir} is not a run folder of {runs_root}.")
    if not ((run_dir / run_files.STATUS_FILE).exists()
            or (run_dir / run_files.LAUNCH_FILE).exists()):
        raise TrainingError(f"{run_dir.name} does not look like a run folder; not deleting it.")
    if is_alive(run_dir):
        raise TrainingError("This run is still running; stop it before deleting it.")
    shutil.rmtree(run_dir)
