"""Trainer callbacks: live metrics (JSONL + a log line) and stopping on SIGTERM / SIGINT."""

from __future__ import annotations

import resource
import signal
import time
from typing import Any

from transformers import TrainerCallback

from backend.training.run_files import append_metrics, format_eta, write_status

GIB = 1024**3


class StopRequested(BaseException):
    """A stop signal arrived before training started (nothing to checkpoint yet)."""


class StopSignal:
    """SIGTERM / SIGINT handler: before training, abort; during training, stop after the step."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self.training = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        first = not self.requested
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        if first:
            where = "saving a checkpoint after this step" if self.training else "before training"
            print(f"[train] {self.signal_name} received: stopping ({where})", flush=True)
        if not self.training and first:
            raise StopRequested(self.signal_name)


class StopCallback(TrainerCallback):
    """Ends training after the current optimizer step once a stop was requested (all ranks)."""

    def __init__(self, stop: StopSignal) -> None:
        self.stop = stop

    def on_train_begin(self, args, state, control, **kwargs):
        self.stop.training = True

    def _agreed(self, args) -> bool:
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.stop.requested
        flag = torch.tensor([1.0 if self.stop.requested else 0.0], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every rank stops at the same step
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed(args):
            self.stop.requested = True
            control.should_save = True
            control.should_training_stop = True
        return control


class MetricsCallback(TrainerCallback):
    """Writes one metrics line per log (rank 0): loss, eval loss, lr, grad norm, tokens/s,
    GPU memory, epoch, ETA; prints a short progress line to stdout (the run's log)."""

    def __init__(self, run_dir, token_counter, world_size: int = 1, is_main: bool = True) -> None:
        self.run_dir = run_dir
        self.count = token_counter  # callable: real tokens this process has trained on
        self.world_size = world_size
        self.is_main = is_main
        self.started = time.time()
        self.warm: tuple[float, int] | None = None  # (time, step) when the first step ended
        self.last_time = self.started
        self.last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = self.last_time = time.time()
        self.warm = None
        self.last_tokens = self.count()

    def on_step_end(self, args, state, control, **kwargs):
        if self.warm is None:  # the first step holds warm-up and compilation: not a pace
            self.warm = (time.time(), state.global_step)

    def _eta(self, state) -> float | None:
        """Seconds left at the pace since the first step of this (resumed) run ended."""
        if self.warm is None or not state.max_steps:
            return None
        since, step = self.warm
        done = state.global_step - step
        if done <= 0:
            return None
        return (time.time() - since) / done * max(state.max_steps - state.global_step, 0)

    @staticmethod
    def _memory() -> dict[str, float | None]:
        import torch

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB → GiB
        if torch.cuda.is_available():
            return {"gpu_mem_gib": torch.cuda.memory_allocated() / GIB,
                    "gpu_peak_gib": torch.cuda.max_memory_allocated() / GIB, "rss_gib": rss}
        return {"gpu_mem_gib": None, "gpu_peak_gib": None, "rss_gib": rss}

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if not self.is_main or not any(k in logs for k in ("loss", "eval_loss")):
            return
        now, tokens = time.time(), self.count()
        elapsed = max(now - self.last_time, 1e-9)
        entry: dict[str, Any] = {
            "step": state.global_step,
            "max_steps": state.max_steps,
            "epoch": round(state.epoch or 0.0, 4),
            "loss": logs.get("loss"),
            "eval_loss": logs.get("eval_loss"),
            "lr": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "time": now,
            "elapsed_s": now - self.started,
            "eta_s": self._eta(state),
        }
        if "loss" in logs:
            entry["tokens_per_s"] = (tokens - self.last_tokens) * self.world_size / elapsed
            self.last_time, self.last_tokens = now, tokens
        entry.update(self._memory())
        append_metrics(self.run_dir, entry)
        write_status(self.run_dir, "running", step=state.global_step, max_steps=state.max_steps)
        if entry["loss"] is not None:
            print(f"[train] step {state.global_step}/{state.max_steps} loss {entry['loss']:.4f} "
                  f"lr {entry['lr'] or 0:.2e} {entry.get('tokens_per_s', 0):.0f} tok/s "
                  f"eta {format_eta(entry['eta_s'])}", flush=True)
        else:
            print(f"[train] step {state.global_step} eval_loss {entry['eval_loss']:.4f}",
                  flush=True)
