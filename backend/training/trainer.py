"""One training run: transformers' Trainer + peft LoRA, writing the run folder as it goes.

The status file says what became of the run: `running`, then `completed`, `failed` (with the
reason) or `stopped` (SIGTERM / SIGINT: a checkpoint is saved after the current step).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from backend.training import run_files
from backend.training.callbacks import MetricsCallback, StopCallback, StopRequested, StopSignal
from backend.training.collate import (
    ExampleDataset,
    PackedDataset,
    PackingCollator,
    PaddingCollator,
    count_tokens,
)
from backend.training.config import CONFIG_FILE, TrainConfig, save_yaml
from backend.training.data import load_data
from backend.training.errors import TrainingError
from backend.training.loss import use_lean_loss
from backend.training.modeling import (
    apply_lora,
    choose_attention,
    choose_precision,
    compile_layers,
    enable_checkpointing,
    load_base_model,
    load_tokenizer,
    resolve_model_path,
    resolve_target_modules,
)

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2


def log(message: str) -> None:
    """A progress line in the run's log (rank 0 only under DDP)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"[train] {message}", flush=True)


def _rank() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _training_args(cfg: TrainConfig, run_dir: Path, precision, has_eval: bool):
    """TrainingArguments, passing only the fields this transformers version knows."""
    import torch
    from transformers import TrainingArguments

    wanted: dict[str, Any] = {
        "output_dir": str(run_dir),
        "max_steps": cfg.max_steps if cfg.max_steps > 0 else -1,
        "num_train_epochs": cfg.epochs,
        "per_device_train_batch_size": cfg.batch_size,
        "per_device_eval_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.scheduler,
        "warmup_steps": cfg.warmup if cfg.warmup < 1 else int(cfg.warmup),
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "logging_steps": cfg.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": cfg.save_total_limit,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": cfg.eval_steps if has_eval else None,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": precision.bf16,
        "fp16": precision.fp16,
        "use_cpu": precision.device == "cpu",
        "report_to": "none",
        "disable_tqdm": True,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
        "ddp_find_unused_parameters": False,
        "label_names": ["labels"],
        "prediction_loss_only": True,
        "log_level": "warning",
    }
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    if cfg.warmup < 1 and "warmup_ratio" in known and "warmup_steps" in known:
        # Older transformers: warmup_steps is an int; the fraction goes to warmup_ratio.
        field = next(f for f in dataclasses.fields(TrainingArguments) if f.name == "warmup_steps")
        if "float" not in str(field.type):
            wanted["warmup_ratio"], wanted["warmup_steps"] = cfg.warmup, 0
    return TrainingArguments(**{k: v for k, v in wanted.items() if k in known})


def _make_trainer_class():
    from transformers import Trainer

    class WorkbenchTrainer(Trainer):
        """Counts the real (non-padding) tokens it trains on, and the padded slots."""

        tokens_seen = 0
        slots_seen = 0

        def training_step(self, model, inputs, *args, **kwargs):
            self.tokens_seen += count_tokens(inputs)
            self.slots_seen += int(inputs["input_ids"].numel())
            return super().training_step(model, inputs, *args, **kwargs)

    return WorkbenchTrainer


def _datasets(cfg: TrainConfig, train, val):
    if cfg.packing:
        return (PackedDataset(train.examples, cfg.max_length, cfg.seed),
                PackedDataset(val.examples, cfg.max_length, cfg.seed) if val else None)
    return ExampleDataset(train.examples), ExampleDataset(val.examples) if val else None


def _check_output_dir(run_dir: Path, resume: str | None) -> None:
    found = run_files.checkpoints(run_dir)
    if resume is None and (found or run_files.has_final_adapter(run_dir)):
        raise TrainingError(f"{run_dir} already holds a run (checkpoints or an adapter). Resume "
                            "it with --resume latest, or choose another output folder.")


def _resume_checkpoint(run_dir: Path, resume: str | None) -> Path | None:
    if resume is None:
        return None
    if str(resume) != "latest" and not str(resume).isdigit():
        raise TrainingError(f"--resume takes `latest` or a step number, not {resume!r}.")
    ckpt = run_files.find_checkpoint(run_dir, resume)
    if ckpt is None:
        steps = [s for s, _ in run_files.checkpoints(run_dir)]
        raise TrainingError(f"No checkpoint {resume} in {run_dir}"
                            + (f" (there are: {', '.join(map(str, steps))})." if steps else
                               " (it has no complete checkpoint)."))
    return ckpt


def _fix_adapter_base(folder: Path, base: Path) -> None:
    """Make the adapter name its base model's real local folder."""
    import json

    path = folder / "adapter_config.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = str(base)
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _train(cfg: TrainConfig, run_dir: Path, resume: str | None, stop: StopSignal,
           is_main: bool, world: int) -> dict[str, Any]:
    """Set up and train; returns the final status fields. Raises on failure."""
    from transformers.trainer_callback import PrinterCallback

    precision = choose_precision(cfg.bf16)
    base = resolve_model_path(cfg.model)
    ckpt = _resume_checkpoint(run_dir, resume)
    if ckpt is None:
        _check_output_dir(run_dir, resume)
    log(f"base model {base} on {precision.device} ({precision.label}), world size {world}")
    tokenizer = load_tokenizer(base, cfg.trust_remote_code)
    train = load_data(cfg.data, tokenizer, cfg.max_length, cfg.long_records)
    log(f"train data: {train.report.summary()}")
    for note in train.report.notes[:20]:
        log(note)
    val = None
    if cfg.val_data:
        val = load_data(cfg.val_data, tokenizer, cfg.max_length, cfg.long_records)
        log(f"validation data: {val.report.summary()}")
    if train.report.truncated:
        log(f"truncated {train.report.truncated} record(s) to {cfg.max_length} tokens")
    if stop.requested:
        raise StopRequested(stop.signal_name or "signal")
    attention = choose_attention(cfg.attention, precision, cfg.packing, log)
    model = load_base_model(base, precision, cfg.trust_remote_code, attention)
    targets = resolve_target_modules(model, cfg.target_modules)
    enable_checkpointing(model, cfg.gradient_checkpointing)
    model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, targets)
    use_lean_loss(model)
    compiled = cfg.compile and compile_layers(model, precision.device) is None
    trainable, total = model.get_nb_trainable_parameters()
    log(f"LoRA r={cfg.lora_r} alpha={cfg.lora_alpha} dropout={cfg.lora_dropout} on {targets}: "
        f"{trainable:,} trainable of {total:,} parameters; checkpointing "
        f"{cfg.gradient_checkpointing}, packing {'on' if cfg.packing else 'off'}, "
        f"attention {attention}"
        f"{', compiled layers (the first steps wait for compilation)' if compiled else ''}")
    train_set, val_set = _datasets(cfg, train, val)
    collator = PackingCollator(trained_logits_only=True) if cfg.packing else PaddingCollator(
        tokenizer.pad_token_id, 8 if precision.device == "cuda" else None)
    log(f"{len(train_set)} training {'rows (packed)' if cfg.packing else 'examples'}, "
        f"batch {cfg.batch_size} x accumulation {cfg.grad_accum} x {world} process(es)")
    args = _training_args(cfg, run_dir, precision, val is not None)
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                          data_collator=collator, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StopCallback(stop))
    trainer.add_callback(MetricsCallback(run_dir, lambda: trainer.tokens_seen, world, is_main))
    if ckpt is not None:
        step = int(ckpt.name.split("-")[-1])
        if is_main:
            run_files.drop_metrics_after(run_dir, step)
        log(f"resuming from {ckpt.name} (step {step})")
    if stop.requested:
        raise StopRequested(stop.signal_name or "signal")
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    state = trainer.state
    losses = [e["loss"] for e in state.log_history if "loss" in e]
    # (result.training_loss averages over every step but counts only this process's steps
    # after a resume: it reads far too low; the last logged loss says more.)
    fields: dict[str, Any] = {"step": state.global_step, "max_steps": state.max_steps,
                              "final_loss": losses[-1] if losses else None}
    latest = run_files.find_checkpoint(run_dir, "latest")
    if stop.requested:
        if latest is not None and is_main:
            _fix_adapter_base(latest, base)
        fields["checkpoint"] = str(latest) if latest else None
        fields["reason"] = f"stopped by {stop.signal_name} at step {state.global_step}"
        fields["state"] = "stopped"
        return fields
    if val_set is not None:
        fields["eval_loss"] = trainer.evaluate().get("eval_loss")
    trainer.save_model(str(run_dir))
    if is_main:
        _fix_adapter_base(run_dir, base)
        for _, path in run_files.checkpoints(run_dir):
            _fix_adapter_base(path, base)
    fields["checkpoint"] = str(latest) if latest else None
    fields["reason"] = f"trained {state.global_step} steps"
    fields["state"] = "completed"
    return fields


def _failure(exc: BaseException) -> tuple[str, int]:
    text = str(exc)
    if isinstance(exc, TrainingError):
        return text, EXIT_BAD_INPUT
    if "out of memory" in text.lower() or isinstance(exc, MemoryError):
        return ("Out of memory: lower --batch-size or --max-length, or turn gradient "
                f"checkpointing on. ({text[:200]})"), EXIT_ERROR
    return f"{type(exc).__name__}: {text[:500]}", EXIT_ERROR


def _quiet_libraries() -> None:
    """No download-style progress bars or deprecation chatter in the run's log."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_warning()
    warnings.filterwarnings("ignore", message=".*deprecated and will be removed in v6.*")


def run_training(cfg: TrainConfig, run_dir: Path, resume: str | None, command: str,
                 stop: StopSignal) -> int:
    """Train into `run_dir` (which exists and is writable); returns the exit code."""
    _quiet_libraries()
    rank, world = _rank()
    is_main = rank == 0
    started = time.time()
    if is_main:
        save_yaml(cfg, run_dir / CONFIG_FILE)
        (run_dir / run_files.COMMAND_FILE).write_text(command + "\n", encoding="utf-8")
        run_files.write_status(run_dir, "running", pid=os.getpid(), started_at=started,
                               reason=None, exit_code=None, resumed_from=resume,
                               world_size=world, command=command)
    try:
        fields = _train(cfg, run_dir, resume, stop, is_main, world)
        state = fields.pop("state")
        code = EXIT_OK
    except StopRequested as exc:
        state, code = "stopped", EXIT_OK
        fields = {"reason": f"stopped by {exc} before training started (no checkpoint)"}
    except KeyboardInterrupt:
        state, code = "stopped", EXIT_OK
        fields = {"reason": "interrupted"}
    except Exception as exc:  # noqa: BLE001 - every failure ends in the status file
        reason, code = _failure(exc)
        state, fields = "failed", {"reason": reason}
        if not isinstance(exc, TrainingError):
            traceback.print_exc()
        print(f"[train] FAILED: {reason}", file=sys.stderr, flush=True)
    if is_main:
        run_files.write_status(run_dir, state, exit_code=code, ended_at=time.time(), **fields)
    log(f"{state}: {fields.get('reason')}")
    return code
