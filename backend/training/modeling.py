"""The base model for training: where it is, its precision, and its LoRA wrapping."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.training.config import ATTENTION
from backend.training.errors import TrainingError

# Module names that hold a transformer block's attention (Llama/Qwen/GLM: self_attn,
# ChatGLM: self_attention, GPT-2/Falcon: attn / attention).
ATTENTION_PARTS = ("self_attn", "self_attention", "attn", "attention")


def resolve_model_path(model: str) -> Path:
    """`default` → the embedded model's local folder; else a Hugging Face folder that exists."""
    from backend import default_model

    if model.strip() in ("", default_model.DEFAULT_MODEL_ALIAS):
        try:
            return default_model.ensure_default_model()
        except default_model.DefaultModelMissingError as exc:
            raise TrainingError(str(exc)) from exc
    path = Path(model).expanduser()
    if not path.exists():
        raise TrainingError(f"Base model folder not found: {path}")
    if not path.is_dir():
        raise TrainingError(f"Base model must be a folder, not a file: {path}")
    if not (path / "config.json").is_file():
        raise TrainingError(f"{path} is not a Hugging Face model folder: it has no config.json.")
    return path.resolve()


@dataclass(frozen=True)
class Precision:
    """How the base model is held and how the Trainer mixes precision."""

    device: str  # "cuda" or "cpu"
    bf16: bool
    fp16: bool

    @property
    def torch_dtype(self):
        import torch

        if self.bf16:
            return torch.bfloat16
        if self.fp16:
            return torch.float16
        return torch.float32

    @property
    def label(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"


def choose_precision(bf16: str) -> Precision:
    """bf16 on GPUs that support it (`auto`), fp16 on older GPUs, fp32 on the CPU."""
    import torch

    cuda = torch.cuda.is_available()
    supported = cuda and torch.cuda.is_bf16_supported()
    if bf16 == "on" and not supported:
        raise TrainingError("bf16 is on, but this machine has no GPU that supports bf16.")
    if not cuda:
        return Precision("cpu", False, False)
    use_bf16 = supported and bf16 != "off"
    return Precision("cuda", use_bf16, not use_bf16)


def _load_error(path: Path, exc: Exception) -> TrainingError:
    text = str(exc)
    if "trust_remote_code" in text:
        return TrainingError(f"{path.name} ships its own code: pass --trust-remote-code "
                             "(only for folders whose code you trust).")
    return TrainingError(f"Could not load the base model {path}: {type(exc).__name__}: "
                         f"{text[:400]}")


def load_tokenizer(path: Path, trust_remote_code: bool = False):
    """The base model's tokenizer (with a pad token: eos when it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - every load failure becomes a message
        raise _load_error(path, exc) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def choose_attention(mode: str, precision: Precision, packing: bool = False,
                     log=lambda _msg: None) -> str:
    """The attention implementation for training.

    `auto` is `varlen` (flash attention over each packed example: no masked blocks computed)
    when packing on a GPU whose torch build passes its self-check, else sdpa. On CUDA, sdpa's
    cuDNN backend is turned off for training: it builds a new cuDNN plan for every new sequence
    length (about 10-25 ms of CPU per layer and pass), and training batches change length at
    nearly every step; measured on an H100 with a 6B model it made steps 3x slower. The flash
    and memory-efficient kernels have no such cost.
    """
    from backend.training import varlen_attention

    if mode not in ATTENTION:
        raise TrainingError(f"attention must be one of {ATTENTION}.")
    choice = mode
    if mode in ("auto", "varlen"):
        reason = (varlen_attention.unavailable_reason(precision.torch_dtype) if packing
                  else "it needs packing")
        if reason is None:
            varlen_attention.register()
            return varlen_attention.NAME
        if mode == "varlen":
            raise TrainingError(f"varlen attention is not available: {reason}.")
        if precision.device == "cuda":
            log(f"attention auto: sdpa, since varlen attention is not available ({reason})")
        choice = "sdpa"
    if precision.device == "cuda" and choice == "sdpa":
        import torch

        torch.backends.cuda.enable_cudnn_sdp(False)
    return choice


def load_base_model(path: Path, precision: Precision, trust_remote_code: bool = False,
                    attention: str = "sdpa"):
    """The model for training; a stale GGUF quantization tag is dropped."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        qconfig = getattr(config, "quantization_config", None)
        if isinstance(qconfig, dict) and qconfig.get("quant_method") == "gguf":
            # The embedded model was de-quantized from GGUF: its weights are plain tensors.
            del config.quantization_config
        config.use_cache = False
        return AutoModelForCausalLM.from_pretrained(
            path, config=config, dtype=precision.torch_dtype, trust_remote_code=trust_remote_code,
            attn_implementation=attention,
        )
    except Exception as exc:  # noqa: BLE001 - every load failure becomes a message
        raise _load_error(path, exc) from exc


def _linear_names(model: Any) -> list[str]:
    import torch

    names = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
            names.append(name)
    return names


def resolve_target_modules(model: Any, spec: str) -> list[str] | str:
    """`auto` → the attention projections' names; `all-linear`; or a checked comma list."""
    spec = spec.strip()
    if spec == "all-linear":
        return spec
    linear = _linear_names(model)
    leaves = sorted({n.rsplit(".", 1)[-1] for n in linear})
    if spec != "auto":
        wanted = [s.strip() for s in spec.split(",") if s.strip()]
        missing = [w for w in wanted if not any(n == w or n.endswith("." + w) for n in linear)]
        if missing:
            raise TrainingError(f"Target modules not found in the model: {', '.join(missing)}. "
                                f"Its linear layers are named: {', '.join(leaves)}.")
        return wanted
    attention = [n for n in linear if any(p in n.split(".")[:-1] for p in ATTENTION_PARTS)]
    if not attention:
        raise TrainingError("Could not find attention projections in this model; set "
                            f"--target-modules from its linear layers: {', '.join(leaves)}.")
    chosen = sorted({n.rsplit(".", 1)[-1] for n in attention})
    outside = [n for n in linear if n not in attention and n.rsplit(".", 1)[-1] in chosen]
    if not outside:
        return chosen
    # The same leaf name is used outside attention: match the attention ones by full path.
    parts = "|".join(ATTENTION_PARTS)
    return rf".*\.({parts})\.({'|'.join(map(re.escape, chosen))})$"


_LOW_RANK = 64  # matmuls with an inner dimension up to this (LoRA's B) are cheap to redo


def _selective_policy():
    """Keep the outputs of the big matmuls and of attention; recompute everything else
    (norms, rotary embedding, activations, dropout, LoRA's rank-r products) in backward."""
    import torch
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

    aten = torch.ops.aten
    names = ("_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
             "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
             "_flash_attention_forward", "_efficient_attention_forward")
    attention = {getattr(aten, n).default for n in names if hasattr(aten, n)}

    def policy(_ctx, op, *args, **_kwargs):
        if op in attention:
            return CheckpointPolicy.MUST_SAVE
        if op in (aten.mm.default, aten.bmm.default):
            if args[0].shape[-1] > _LOW_RANK:
                return CheckpointPolicy.MUST_SAVE
        elif op is aten.addmm.default and args[1].shape[-1] > _LOW_RANK:
            return CheckpointPolicy.MUST_SAVE
        return CheckpointPolicy.PREFER_RECOMPUTE

    return lambda: create_selective_checkpoint_contexts(policy)


def enable_checkpointing(model: Any, mode: str = "full") -> None:
    """Activation checkpointing of every decoder layer (non-reentrant).

    `full` keeps only each layer's input and recomputes the whole layer in backward;
    `selective` also keeps the big matmul and attention outputs and recomputes only the cheap
    element-wise work (less GPU work, more memory; its dispatch mode costs CPU time per op,
    and on an H100 with a 6B model it measured slower than `full`).
    """
    if mode == "off":
        return
    kwargs: dict[str, Any] = {"use_reentrant": False}
    if mode == "selective":
        kwargs["context_fn"] = _selective_policy()
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.enable_input_require_grads()


def decoder_layers(model: Any) -> list:
    """The transformer blocks of a (peft-wrapped) causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else getattr(base, "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise TrainingError("Cannot find this model's decoder layers to compile.")
    return list(layers)


def compile_layers(model: Any, device: str) -> str | None:
    """torch.compile each decoder layer on a GPU (regional compilation: one graph serves every
    layer, with dynamic sizes: packed batches change length every step). A layer that fails to
    compile runs uncompiled. Returns why nothing was compiled, or None."""
    if device != "cuda":
        return "layers are compiled on GPUs only"
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    for layer in decoder_layers(model):
        layer.compile(dynamic=True)
    return None


def apply_lora(model: Any, r: int, alpha: float, dropout: float, targets: list[str] | str):
    """Wrap the base model in a peft LoRA model; only the adapter weights train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=targets)
    return get_peft_model(model, config)
