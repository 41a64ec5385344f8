"""Reading a LoRA adapter folder and checking that it fits a base model.

An adapter fits when the base model it names is the loaded one (same resolved folder, or the
same folder name: a hub id such as `HuggingFaceTB/SmolLM2-135M-Instruct` matches a local
`SmolLM2-135M-Instruct`) and every LoRA weight has the shape of the module it attaches to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend import default_model
from backend.compare.errors import CompareError
from backend.compare.paths import kind_of, resolved, user_path

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_PREFIX = "base_model.model."


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter folder holds, read from its files."""

    path: Path
    base_name: str
    weights: Path
    stamp: int  # newest mtime (ns) of its config and weights: a retrained folder is new

    @property
    def adapter_name(self) -> str:
        """The name it gets inside the model: one per folder version."""
        digest = hashlib.sha1(f"{self.path}|{self.stamp}".encode()).hexdigest()[:12]
        return f"cmp_{digest}"


def _stamp(paths: list[Path]) -> int:
    return max(p.stat().st_mtime_ns for p in paths)


def read_adapter(path: str | Path) -> AdapterInfo:
    """Inspect a folder; CompareError when it is not a usable LoRA adapter."""
    folder = user_path(str(path), "adapter folder")
    kind = kind_of(folder)
    if kind == "missing":
        raise CompareError(f"Adapter folder not found: {folder}")
    if kind != "dir":
        raise CompareError(f"Not a folder: {folder}. Point to a LoRA adapter folder.")
    folder = resolved(folder)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        if (folder / "config.json").is_file():
            raise CompareError(f"{folder} is a full model folder, not a LoRA adapter: use it as "
                               "the base model instead.")
        raise CompareError(f"{folder} is not a LoRA adapter folder: it has no "
                           "adapter_config.json.")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompareError(f"Cannot read {config_file}: {exc}") from None
    if not isinstance(config, dict):
        raise CompareError(f"{config_file} does not hold a JSON object.")
    peft_type = str(config.get("peft_type") or "")
    if peft_type.upper() != "LORA":
        raise CompareError(f"{folder.name} is a {peft_type or 'unknown'} adapter; only LoRA "
                           "adapters can be compared.")
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        raise CompareError(f"{config_file} names no base model (base_model_name_or_path).")
    weights = next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None:
        raise CompareError(f"{folder} has adapter_config.json but no adapter weights "
                           f"({' or '.join(WEIGHT_FILES)}).")
    return AdapterInfo(folder, base.strip(), weights, _stamp([config_file, weights]))


def resolve_base(name: str) -> Path:
    """A base model name as a local folder (`default`: the embedded model's converted folder)."""
    if name.strip() in ("", default_model.DEFAULT_MODEL_ALIAS):
        return default_model.converted_dir().resolve()
    return resolved(user_path(name, "base model folder"))


def base_matches(info: AdapterInfo, base_folder: Path) -> bool:
    """True when the adapter names this base folder (or a folder of the same name)."""
    named = info.base_name.rstrip("/\\")
    try:
        if resolve_base(named) == base_folder.resolve():
            return True
    except CompareError:
        pass
    return named.replace("\\", "/").rsplit("/", 1)[-1].lower() == base_folder.name.lower()


def check_base(info: AdapterInfo, base_folder: Path) -> None:
    """CompareError when the adapter was made for another base model."""
    if not base_matches(info, base_folder):
        raise CompareError(
            f"{info.path.name} was made for another base model ({info.base_name}); the base "
            f"model here is {base_folder}. Pick that adapter's base model, or another adapter."
        )


def adapter_shapes(info: AdapterInfo) -> dict[str, tuple[int, ...]]:
    """Every weight's name and shape (the safetensors header only; .bin files are loaded)."""
    try:
        if info.weights.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(info.weights), "pt") as handle:
                return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
        import torch

        state = torch.load(info.weights, map_location="cpu", weights_only=True)
        return {k: tuple(v.shape) for k, v in state.items()}
    except Exception as exc:  # noqa: BLE001 - a corrupt file becomes a message
        raise CompareError(f"Cannot read the adapter weights {info.weights}: "
                           f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _module_key(key: str) -> tuple[str, str] | None:
    """(module path, part) of a LoRA weight key, or None for other keys."""
    name = key.removeprefix(_PREFIX)
    for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
        marker = f".{part}."
        if marker in name:
            return name.split(marker, 1)[0], part
    return None


def _features(module: Any) -> tuple[int | None, int | None]:
    base = getattr(module, "base_layer", module)
    in_f = getattr(base, "in_features", None) or getattr(base, "num_embeddings", None)
    out_f = getattr(base, "out_features", None) or getattr(base, "embedding_dim", None)
    return in_f, out_f


def check_shapes(info: AdapterInfo, model: Any) -> None:
    """CompareError when a LoRA weight targets a module the model lacks or has another shape."""
    shapes = adapter_shapes(info)
    if not shapes:
        raise CompareError(f"{info.weights} holds no weights.")
    problems = []
    for key, shape in sorted(shapes.items()):
        parsed = _module_key(key)
        if parsed is None or len(shape) != 2:
            continue
        module_path, part = parsed
        try:
            module = model.get_submodule(module_path)
        except AttributeError:
            problems.append(f"it adapts {module_path}, which this base model does not have")
            continue
        in_f, out_f = _features(module)
        if part == "lora_A" and in_f is not None and shape[1] != in_f:
            problems.append(f"{module_path} takes {in_f} inputs, the adapter expects {shape[1]}")
        elif part == "lora_B" and out_f is not None and shape[0] != out_f:
            problems.append(f"{module_path} gives {out_f} outputs, the adapter expects {shape[0]}")
        if len(problems) >= 3:
            break
    if problems:
        raise CompareError(f"{info.path.name} does not fit this base model (made for another "
                           f"model?): {'; '.join(problems)}.")
