"""The hyperparameters of a training run: one dataclass, its YAML file and its checks.

LoRA defaults are the reference recipe's (r 8, alpha 32, dropout 0.1, 3000 steps, batch 4,
save and evaluate every 500 steps). The learning rate is 2e-4 (the reference's 5e-5 learns
slowly with r 8). Target modules `auto` are the attention projections.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backend.training.data import LONG_POLICIES
from backend.training.errors import TrainingError

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts",
              "polynomial", "inverse_sqrt")
BF16_CHOICES = ("auto", "on", "off")
CHECKPOINTING = ("full", "selective", "off")
ATTENTION = ("auto", "varlen", "sdpa", "flex_attention", "eager")
CONFIG_FILE = "run_config.yaml"


def _f(default: Any, help: str, choices: tuple | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    """Everything a run needs; field names are the YAML keys, `--kebab-case` the CLI flags."""

    model: str = _f("default", "base model: a local Hugging Face folder, or `default` for the "
                    "embedded SmolLM2-135M-Instruct")
    data: str = _f("", "training data file (.json list or .jsonl)")
    val_data: str | None = _f(None, "validation data file (same formats)")
    output_dir: str = _f("", "run folder: checkpoints, final adapter, metrics, status")
    lora_r: int = _f(8, "LoRA rank r")
    lora_alpha: float = _f(32, "LoRA alpha (scaling = alpha / r)")
    lora_dropout: float = _f(0.1, "dropout on the LoRA input")
    target_modules: str = _f("auto", "modules that get LoRA: `auto` (the attention projections), "
                             "`all-linear`, or a comma-separated list such as q_proj,v_proj")
    learning_rate: float = _f(2e-4, "peak learning rate")
    max_steps: int = _f(3000, "optimizer steps to train; 0 or less: train for --epochs")
    epochs: float = _f(3.0, "epochs, used only when --max-steps is 0 or less")
    batch_size: int = _f(4, "per-device micro-batch: sequences, or packed rows with --packing")
    grad_accum: int = _f(1, "gradient accumulation steps")
    max_length: int = _f(1024, "maximum tokens per example (and per packed row)")
    long_records: str = _f("error", "records longer than --max-length: error, truncate or drop",
                           choices=LONG_POLICIES)
    warmup: float = _f(0.0, "warmup: steps (1 or more), or a fraction of all steps (below 1)")
    scheduler: str = _f("linear", "learning-rate schedule", choices=SCHEDULERS)
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping norm")
    save_steps: int = _f(500, "save a checkpoint every N steps")
    eval_steps: int = _f(500, "evaluate on --val-data every N steps")
    logging_steps: int = _f(1, "write metrics every N steps")
    save_total_limit: int | None = _f(None, "keep at most N checkpoints (the newest)")
    seed: int = _f(42, "random seed")
    bf16: str = _f("auto", "bf16: auto (on GPUs that support it), on, off", choices=BF16_CHOICES)
    gradient_checkpointing: str = _f(
        "full", "activation checkpointing: full (least memory), selective (keeps matmul and "
        "attention outputs, recomputes the cheap rest; more memory, and its per-op dispatch "
        "costs CPU time: slower than full on an H100 with a 6B model) or off (most memory)",
        choices=CHECKPOINTING)
    packing: bool = _f(True, "padding-free packing: several examples per row, no pad tokens")
    compile: bool = _f(True, "torch.compile each decoder layer on GPUs (fuses the small "
                       "element-wise work; the first steps wait for compilation, a layer that "
                       "fails to compile runs uncompiled); ignored on the CPU")
    attention: str = _f("auto", "attention kernels: auto (varlen when packing on a GPU, else "
                        "sdpa), varlen (flash attention per packed example; GPU), sdpa (on GPUs "
                        "without its cuDNN backend), flex_attention (GPU) or eager",
                        choices=ATTENTION)
    trust_remote_code: bool = _f(False, "allow a base model that ships its own code (ChatGLM3)")

    def __post_init__(self) -> None:
        gc = str(self.gradient_checkpointing).strip().lower()
        self.gradient_checkpointing = {"true": "full", "on": "full", "yes": "full",
                                       "false": "off", "no": "off"}.get(gc, gc)
        self.validate()

    def validate(self) -> None:
        """Raise TrainingError for a value that cannot work."""
        checks = [
            (self.lora_r >= 1, "lora_r must be at least 1"),
            (self.lora_alpha > 0, "lora_alpha must be positive"),
            (0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
            (self.learning_rate > 0, "learning_rate must be positive"),
            (self.max_steps > 0 or self.epochs > 0, "set max_steps or epochs above 0"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.grad_accum >= 1, "grad_accum must be at least 1"),
            (self.max_length >= 8, "max_length must be at least 8"),
            (self.warmup >= 0, "warmup must not be negative"),
            (self.save_steps >= 1, "save_steps must be at least 1"),
            (self.eval_steps >= 1, "eval_steps must be at least 1"),
            (self.logging_steps >= 1, "logging_steps must be at least 1"),
            (self.save_total_limit is None or self.save_total_limit >= 1,
             "save_total_limit must be at least 1"),
            *[(getattr(self, f.name) in f.metadata["choices"],
               f"{f.name} must be one of {f.metadata['choices']}")
              for f in dataclasses.fields(self) if f.metadata.get("choices")],
            (bool(str(self.target_modules).strip()), "target_modules must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(f"Bad setting: {message}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def field_specs() -> list[dataclasses.Field]:
    return list(dataclasses.fields(TrainConfig))


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """YAML values to the field's type, with a clear error."""
    text = str(kind)
    if value is None:
        if "None" in text:
            return None
        raise TrainingError(f"Bad setting: {name} must not be empty.")
    try:
        if text.startswith("bool"):
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "on", "1"):
                return True
            if str(value).lower() in ("false", "no", "off", "0"):
                return False
            raise ValueError(value)
        if text.startswith("int"):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError(value)
            return int(float(value))
        if text.startswith("float"):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        expected = text.split(" ")[0]
        raise TrainingError(f"Bad setting: {name} must be {expected}, got {value!r}.") from None


def config_from_mapping(values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A config from a dict (YAML keys, dashes allowed), on top of `base`."""
    known = {f.name: f for f in field_specs()}
    changes = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise TrainingError(
                f"Unknown setting {key!r}. Known settings: {', '.join(sorted(known))}."
            )
        changes[name] = _coerce(name, value, known[name].type)
    start = base.to_dict() if base else {}
    return TrainConfig(**{**start, **changes})


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping a run YAML holds; TrainingError for a missing or malformed file."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrainingError(f"Config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"Cannot read config file {path}: {exc}") from None
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise TrainingError(f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise TrainingError(f"{path.name} must hold a mapping of settings.")
    return values


def save_yaml(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
