"""The embedded default model: from the GGUF package, the converted cache, and a real answer."""

from __future__ import annotations

import torch

from backend import default_model
from backend.model_loader import ModelSpec, load_model
from backend.sampling import SamplingSettings

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def test_gguf_ships_in_the_package():
    path = default_model.gguf_path()
    assert path.name == default_model.GGUF_FILE
    assert path.stat().st_size > 50_000_000


def test_converted_cache_matches_the_gguf_weights(engine):
    """The cached HF folder holds exactly the weights transformers reads from the GGUF file."""
    assert default_model.is_converted()
    assert (default_model.converted_dir() / "config.json").is_file()
    _, gguf_model = default_model.load_from_gguf()
    converted = engine.loaded.model.state_dict()
    for name, tensor in gguf_model.state_dict().items():
        assert torch.equal(tensor, converted[name]), name


def test_load_from_cache_is_a_plain_folder_load(engine):
    loaded = load_model(ModelSpec())
    assert loaded.name == default_model.DEFAULT_MODEL_NAME
    assert loaded.context_length == 8192
    assert loaded.tokenizer.chat_template
    assert str(loaded.device) == "cpu" and loaded.dtype == torch.float32


def test_answers_capital_of_france_with_paris(engine):
    stream = engine.chat_stream(FRANCE, SamplingSettings(temperature=0, max_new_tokens=30))
    text = "".join(stream)
    assert "Paris" in text
    assert stream.stats.stop_reason == "eos"


def test_converted_config_is_not_marked_quantized(engine):
    import json

    config = json.loads((default_model.converted_dir() / "config.json").read_text())
    assert "quantization_config" not in config
    assert not getattr(engine.loaded.model, "is_quantized", False)
