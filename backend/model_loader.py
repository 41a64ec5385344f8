"""Loading any local Hugging Face causal LM folder (or the embedded default) with clear errors."""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import default_model

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
QUANTIZATIONS = ("none", "8bit", "4bit")


class ModelLoadError(RuntimeError):
    """A load failed; the message is meant for the user, as it stands."""


@dataclass(frozen=True)
class ModelSpec:
    """What to load: a folder (or `default`), remote-code trust and quantization."""

    path: str = default_model.DEFAULT_MODEL_ALIAS
    trust_remote_code: bool = False
    quantization: str = "none"

    @property
    def is_default(self) -> bool:
        return self.path.strip() in ("", default_model.DEFAULT_MODEL_ALIAS)


@dataclass
class LoadedModel:
    """A model ready to generate, and what the UI shows about it."""

    spec: ModelSpec
    name: str
    model: Any
    tokenizer: Any
    context_length: int
    load_seconds: float
    adapter_path: str | None = None
    # "static": static cache + CUDA graphs; "loop": own decode loop; "generate": generate() thread
    decode_path: str = "loop"
    static_decoder: Any = None
    fast_path: str = "off"  # what the model status shows about the fast CUDA path
    notes: list[str] = field(default_factory=list)

    @property
    def device(self):
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self):
        return self.model.get_input_embeddings().weight.dtype


def auto_dtype():
    """bf16 on CUDA GPUs that support it (fp16 on older ones), fp32 on the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Cannot read {path.name} in {path.parent}: {exc}") from exc


def _check_model_folder(folder: Path, trust_remote_code: bool) -> dict:
    """Fail early, with a plain message, on folders that cannot load."""
    from transformers import CONFIG_MAPPING

    if not folder.exists():
        raise ModelLoadError(f"Model folder not found: {folder}")
    if not folder.is_dir():
        raise ModelLoadError(f"Not a folder: {folder}. Point to a Hugging Face model folder.")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"{folder} is not a Hugging Face model folder: it has no config.json."
        )
    config = _read_json(folder / "config.json")
    model_type = config.get("model_type")
    native = model_type in CONFIG_MAPPING
    if not native and not trust_remote_code:
        if config.get("auto_map"):
            raise ModelLoadError(
                f"This model ({model_type or 'unknown type'}) ships its own code and needs "
                "'Trust remote code'. Turn it on only for folders whose code you trust."
            )
        raise ModelLoadError(f"Unknown model type {model_type!r} in {folder}/config.json.")
    return config


def _context_length(config: Any, tokenizer: Any) -> int:
    for name in ("max_position_embeddings", "seq_length", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    return 2048


def _quantization_config(kind: str):
    if kind == "none":
        return None
    if kind not in QUANTIZATIONS:
        raise ModelLoadError(f"Unknown quantization {kind!r}; choose one of {QUANTIZATIONS}.")
    import torch

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(
            f"{kind} loading needs the bitsandbytes package: `pip install bitsandbytes`."
        )
    if not torch.cuda.is_available():
        raise ModelLoadError(f"{kind} loading needs a CUDA GPU; this machine has none.")
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=auto_dtype())


def _load_folder(folder: Path, spec: ModelSpec, report: Progress):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report(0.75 if spec.is_default else 0.2, "Loading tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=spec.trust_remote_code)
    report(0.8 if spec.is_default else 0.3, "Loading weights")
    kwargs: dict[str, Any] = {"dtype": auto_dtype(), "trust_remote_code": spec.trust_remote_code}
    quant = _quantization_config(spec.quantization)
    if quant is not None:
        kwargs["quantization_config"] = quant
    if torch.cuda.is_available():
        kwargs["device_map"] = "auto"  # spreads a large model over every visible GPU
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    model.eval()
    return tokenizer, model


def _translate(exc: Exception, folder: Path) -> ModelLoadError:
    text = str(exc)
    if "trust_remote_code" in text:
        return ModelLoadError(
            "This model needs 'Trust remote code' (it ships its own Python code). "
            "Turn it on only for folders whose code you trust."
        )
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return ModelLoadError(f"Not enough memory to load {folder.name}: {text[:300]}")
    return ModelLoadError(f"Could not load {folder}: {type(exc).__name__}: {text[:500]}")


def load_model(spec: ModelSpec, progress: Progress | None = None) -> LoadedModel:
    """Load the model a spec names; raises ModelLoadError with a user-facing message."""
    report = progress or (lambda _f, _m: None)
    started = time.perf_counter()
    adapter: Path | None = None
    try:
        if spec.is_default:
            report(0.02, "Locating the embedded model")
            folder = default_model.ensure_default_model(report)
            name = default_model.DEFAULT_MODEL_NAME
        else:
            folder = Path(spec.path).expanduser()
            if (folder / "adapter_config.json").is_file():
                adapter = folder
                base = _read_json(folder / "adapter_config.json").get("base_model_name_or_path")
                if not base:
                    raise ModelLoadError(f"{folder}/adapter_config.json names no base model.")
                folder = Path(base)
                is_default = str(base) == default_model.DEFAULT_MODEL_ALIAS
                if is_default or folder == default_model.converted_dir():
                    folder = default_model.ensure_default_model(report)
                elif not folder.is_dir():
                    raise ModelLoadError(
                        f"The adapter's base model {base!r} is not a local folder. "
                        "Edit base_model_name_or_path in adapter_config.json to a local path."
                    )
            report(0.05, "Checking the model folder")
            _check_model_folder(folder, spec.trust_remote_code)
            name = adapter.name if adapter else folder.name
    except default_model.DefaultModelMissingError as exc:
        raise ModelLoadError(str(exc)) from exc
    try:
        tokenizer, model = _load_folder(folder, spec, report)
        if adapter is not None:
            report(0.9, f"Applying LoRA adapter {adapter.name}")
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
            model.eval()
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - every load failure becomes a message
        log.exception("model load failed")
        raise _translate(exc, folder) from exc
    loaded = LoadedModel(
        spec=spec,
        name=name,
        model=model,
        tokenizer=tokenizer,
        context_length=_context_length(model.config, tokenizer),
        load_seconds=0.0,
        adapter_path=str(adapter) if adapter else None,
    )
    if spec.trust_remote_code and type(model.config).__module__.startswith("transformers_modules"):
        loaded.decode_path = "generate"
        loaded.notes.append("remote-code model: streaming through model.generate")
    if not getattr(tokenizer, "chat_template", None):
        loaded.notes.append("no chat template: using the workbench's plain fallback format")
    report(0.9, "Warming up")
    _warm_up(loaded)
    _enable_fast_path(loaded, report)
    loaded.load_seconds = time.perf_counter() - started
    report(1.0, f"Loaded {name} in {loaded.load_seconds:.1f} s")
    return loaded


def _warm_up(loaded: LoadedModel) -> None:
    """One short forward pass, so the first reply does not pay for lazy initialisation."""
    import torch

    ids = loaded.tokenizer("Hello", add_special_tokens=False)["input_ids"][:4] or [0]
    with torch.inference_mode():
        loaded.model(input_ids=torch.tensor([ids], device=loaded.device), use_cache=True)


def _enable_fast_path(loaded: LoadedModel, report: Progress) -> None:
    """Use the static-cache CUDA-graph decoder when the model allows it; say why when not."""
    from backend.qkv_fusion import fuse_qkv
    from backend.static_decode import StaticDecoder, static_path_blocker

    if os.environ.get("WORKBENCH_FAST_PATH", "1") == "0":
        loaded.fast_path = "off: WORKBENCH_FAST_PATH=0"
        return
    if loaded.decode_path != "loop":
        loaded.fast_path = "off: remote-code model"
        return
    blocker = static_path_blocker(loaded.model)
    if blocker is not None:
        loaded.fast_path = f"off: {blocker}"
        return
    report(0.93, "Compiling the fast CUDA decode path (static cache, CUDA graphs)")
    try:
        fused = fuse_qkv(loaded.model)
        decoder = StaticDecoder(loaded.model)
        decoder.warm_up()
    except Exception as exc:  # noqa: BLE001 - any failure means: use the plain path
        log.warning("fast path unavailable for %s: %s", loaded.name, exc, exc_info=True)
        loaded.fast_path = f"off: {type(exc).__name__}: {str(exc)[:200]}"
        return
    loaded.static_decoder = decoder
    loaded.decode_path = "static"
    sizes = "/".join(str(b) for b in decoder.buckets)
    loaded.fast_path = f"on: static cache ({sizes} tokens), CUDA graphs, {fused} fused q/k/v"


def drop_fast_path(loaded: LoadedModel, note: str) -> None:
    """Leave the fast path (static decoder and fused q/k/v): adapters are about to wrap the
    projections, which neither the fused layers nor the captured CUDA graphs would call."""
    from backend.qkv_fusion import unfuse_qkv

    loaded.static_decoder = None
    if loaded.decode_path == "static":
        loaded.decode_path = "loop"
    if unfuse_qkv(loaded.model) or loaded.fast_path.startswith("on"):
        loaded.fast_path = note


def free_model(loaded: LoadedModel | None) -> None:
    """Drop a model's references and give its GPU memory back."""
    if loaded is None:
        return
    loaded.model = None
    loaded.tokenizer = None
    loaded.static_decoder = None
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
