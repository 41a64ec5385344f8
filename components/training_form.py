"""The "New run" form: base model, dataset (upload or pick), hyperparameters, GPUs, Launch.

The data is checked with the base model's own chat template before anything is launched.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from backend.training import runner
from backend.training.config import (
    ATTENTION,
    BF16_CHOICES,
    CHECKPOINTING,
    SCHEDULERS,
    TrainConfig,
)
from backend.training.data import LONG_POLICIES, PreparedData, check_data
from backend.training.encoding import ChatEncoder
from backend.training.errors import TrainingError
from backend.training.gpus import list_gpus
from backend.training.modeling import load_tokenizer, resolve_model_path
from components.training_preview import render_preview, render_report

DATASETS_DIR = "_datasets"
SOURCES = ("Upload a file", "An earlier upload", "A file on this machine")
DEFAULTS = TrainConfig()
# name, label, min, step, format (None: integer input)
NUMBERS = [
    ("lora_r", "LoRA r", 1, 1, None),
    ("lora_alpha", "LoRA alpha", 0.5, 1.0, "%.1f"),
    ("lora_dropout", "LoRA dropout", 0.0, 0.05, "%.2f"),
    ("learning_rate", "Learning rate", 1e-8, 1e-5, "%.1e"),
    ("max_steps", "Max steps (0: train for epochs)", 0, 10, None),
    ("epochs", "Epochs (when max steps is 0)", 0.0, 0.5, "%.1f"),
    ("batch_size", "Batch size per device", 1, 1, None),
    ("grad_accum", "Gradient accumulation", 1, 1, None),
    ("max_length", "Max length (tokens)", 8, 64, None),
    ("warmup", "Warmup (steps, or a fraction below 1)", 0.0, 0.01, "%.2f"),
    ("save_steps", "Save a checkpoint every N steps", 1, 10, None),
    ("eval_steps", "Evaluate every N steps", 1, 10, None),
    ("seed", "Seed", 0, 1, None),
]


@dataclass
class CheckResult:
    """A data check, kept in the session so it stays on screen."""

    train: PreparedData
    val: PreparedData | None
    encoder: ChatEncoder

    @property
    def ok(self) -> bool:
        return self.train.report.ok and (self.val is None or self.val.report.ok)


@st.cache_resource(show_spinner=False, max_entries=4)
def _tokenizer(model: str, trust_remote_code: bool):
    return load_tokenizer(resolve_model_path(model), trust_remote_code)


def _save_upload(upload, folder: Path) -> Path:
    """Store an uploaded data file under the runs root; the name is made safe."""
    data = upload.getvalue()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(upload.name).name).strip("-.") or "data.jsonl"
    target = folder / f"{hashlib.sha256(data).hexdigest()[:10]}-{stem}"
    folder.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.write_bytes(data)
    return target


def _earlier_uploads(folder: Path) -> list[str]:
    try:
        return sorted((p.name for p in folder.iterdir() if p.is_file()), reverse=True)
    except OSError:
        return []


def _data_source(runs_root: Path) -> str:
    """The chosen training data file's path ('' when none is chosen yet)."""
    folder = runs_root / DATASETS_DIR
    source = st.radio("Training data", SOURCES, key="train_source", horizontal=True)
    if source == SOURCES[0]:
        upload = st.file_uploader("Training data (.json list or .jsonl)", type=["json", "jsonl"],
                                  key="train_upload")
        if upload is None:
            return ""
        try:
            return str(_save_upload(upload, folder))
        except OSError as exc:
            st.error(f"Cannot keep the upload in {folder}: {exc.strerror or exc}. Choose a runs "
                     "folder you can write (WORKBENCH_RUNS_DIR), or a file on this machine.")
            return ""
    if source == SOURCES[1]:
        names = _earlier_uploads(folder)
        if not names:
            st.caption("No earlier uploads yet.")
            return ""
        return str(folder / st.selectbox("Earlier upload", names, key="train_earlier"))
    return st.text_input("Data file path", key="train_data_path",
                         placeholder="/path/to/train.jsonl").strip()


def _hyperparameters() -> dict:
    values: dict = {}
    with st.expander("Hyperparameters", expanded=False):
        cols = st.columns(4)
        for i, (name, label, low, step, fmt) in enumerate(NUMBERS):
            default = getattr(DEFAULTS, name)
            with cols[i % 4]:
                if fmt is None:
                    values[name] = st.number_input(label, min_value=int(low), value=int(default),
                                                   step=int(step), key=f"train_{name}")
                else:
                    values[name] = st.number_input(label, min_value=float(low),
                                                   value=float(default), step=float(step),
                                                   format=fmt, key=f"train_{name}")
        cols = st.columns(4)
        values["target_modules"] = cols[0].text_input(
            "Target modules", DEFAULTS.target_modules, key="train_target_modules",
            help="auto: the attention projections; all-linear; or a list such as q_proj,v_proj")
        values["scheduler"] = cols[1].selectbox("LR schedule", SCHEDULERS, key="train_scheduler")
        values["long_records"] = cols[2].selectbox(
            "Records longer than max length", LONG_POLICIES, key="train_long_records",
            help="error: refuse the data; truncate: cut them (counted in the log); drop them")
        values["bf16"] = cols[3].selectbox("bf16", BF16_CHOICES, key="train_bf16",
                                           help="auto: on GPUs that support it")
        cols = st.columns(4)
        values["gradient_checkpointing"] = cols[0].selectbox(
            "Gradient checkpointing", CHECKPOINTING,
            index=CHECKPOINTING.index(DEFAULTS.gradient_checkpointing), key="train_gc",
            help="full: least memory; selective: keeps matmul/attention outputs and recomputes "
                 "the cheap rest (more memory; CPU-heavy, measured slower than full on an "
                 "H100); off: fastest, most memory.")
        values["packing"] = cols[1].toggle(
            "Packing (padding-free)", DEFAULTS.packing, key="train_packing",
            help="Several examples per row, kept apart by position ids; no pad tokens.")
        values["compile"] = cols[2].toggle(
            "Compile layers (GPU)", DEFAULTS.compile, key="train_compile",
            help="torch.compile each decoder layer on GPUs (ignored on the CPU): faster steps "
                 "after a slow start.")
        values["attention"] = cols[3].selectbox(
            "Attention", ATTENTION, index=ATTENTION.index(DEFAULTS.attention),
            key="train_attention",
            help="auto: varlen when packing on a GPU (flash attention over each packed "
                 "example), else sdpa (without its cuDNN backend on GPUs); flex_attention: GPU "
                 "only, recompiles for every new packed length.")
    return values


@st.cache_data(ttl=60, show_spinner=False)
def _gpus() -> list:
    """The GPUs, asked of the driver once a minute rather than on every rerun of the form."""
    return list_gpus()


def _gpu_pick() -> list[int] | None:
    gpus = _gpus()
    if not gpus:
        st.caption("No CUDA GPU found: the run trains on the CPU.")
        return None
    labels = {g.label: g.index for g in gpus}
    picked = st.multiselect("GPUs (sets CUDA_VISIBLE_DEVICES; several: DDP via torchrun)",
                            list(labels), default=list(labels)[:1], key="train_gpus")
    if not picked:
        st.caption("No GPU picked: the run trains on the CPU.")
    return [labels[p] for p in picked]


def _check(config: TrainConfig) -> CheckResult:
    tokenizer = _tokenizer(config.model, config.trust_remote_code)
    train = check_data(config.data, tokenizer, config.max_length, config.long_records)
    val = check_data(config.val_data, tokenizer, config.max_length, config.long_records) \
        if config.val_data else None
    return CheckResult(train, val, ChatEncoder(tokenizer))


def _show_check(result: CheckResult) -> None:
    render_report("Training data", result.train.report)
    if result.val is not None:
        render_report("Validation data", result.val.report)
    if result.ok:
        render_preview(result.train.conversations, result.encoder)


def render_new_run(runs_root: Path) -> None:
    """The whole form, its data check and the Launch button."""
    st.subheader("New run")
    cols = st.columns([3, 1])
    model = cols[0].text_input("Base model", "default", key="train_model",
                               help="A local Hugging Face folder, or `default` for the embedded "
                                    "SmolLM2-135M-Instruct.").strip()
    trust = cols[1].checkbox("Trust remote code", key="train_trust",
                             help="Only for model folders whose code you trust (ChatGLM3).")
    data = _data_source(runs_root)
    val = st.text_input("Validation data path (optional)", key="train_val_path").strip()
    values = _hyperparameters()
    gpus = _gpu_pick()
    cols = st.columns([1, 1, 4])
    check_clicked = cols[0].button("Check data", key="train_check", width="stretch")
    launch_clicked = cols[1].button("Launch", key="train_launch", type="primary",
                                    width="stretch")
    if not (check_clicked or launch_clicked):
        result = st.session_state.get("train_check_result")
        if result is not None:
            _show_check(result)
        return
    st.session_state.pop("train_check_result", None)
    if not data:
        st.error("Choose a training data file first.")
        return
    try:
        config = TrainConfig(model=model or "default", data=data, val_data=val or None,
                             trust_remote_code=trust, **values)
        with st.spinner("Checking the data with the model's chat template…"):
            result = _check(config)
    except TrainingError as exc:
        st.error(str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - the page shows a message, never a traceback
        st.error(f"Could not check the data: {type(exc).__name__}: {exc}")
        return
    st.session_state["train_check_result"] = result
    if launch_clicked and result.ok:
        try:
            run_dir = runner.launch(config, runs_root, gpus)
        except TrainingError as exc:
            st.error(str(exc))
        else:
            st.success(f"Launched run **{run_dir.name}**. It trains in its own process: "
                       "closing this tab does not stop it.")
    _show_check(result)
