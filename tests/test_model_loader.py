"""Loading other models: bad folders, remote code, quantization, LoRA adapter folders, switching."""

from __future__ import annotations

import json

import pytest

from backend import default_model
from backend.engine import ModelEngine
from backend.model_loader import ModelLoadError, ModelSpec, load_model
from backend.prompting import FALLBACK_STOP_STRINGS, fallback_prompt, render_prompt


def test_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(ModelSpec(path=str(tmp_path / "nope")))


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(ModelSpec(path=str(tmp_path)))


def test_remote_code_model_without_trust(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "chatglm", "auto_map": {"AutoModel": "modeling_chatglm.ChatGLMModel"}}))
    with pytest.raises(ModelLoadError, match="Trust remote code"):
        load_model(ModelSpec(path=str(tmp_path)))


def test_quantization_without_bitsandbytes_or_gpu():
    folder = str(default_model.converted_dir())
    with pytest.raises(ModelLoadError, match="bitsandbytes|CUDA GPU"):
        load_model(ModelSpec(path=folder, quantization="4bit"))


def test_lora_adapter_folder_loads_base_plus_adapter(engine, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base_dir = default_model.converted_dir()
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_dir)
    loaded = load_model(ModelSpec(path=str(tmp_path / "adapter")))
    assert isinstance(loaded.model, PeftModel)
    assert loaded.adapter_path == str(tmp_path / "adapter")


def test_failed_switch_keeps_the_previous_model(tmp_path):
    eng = ModelEngine()
    eng.load(ModelSpec())
    with pytest.raises(ModelLoadError):
        eng.load(ModelSpec(path=str(tmp_path / "missing")))
    assert eng.loaded is not None and eng.loaded.spec == ModelSpec()
    eng.unload()
    assert eng.loaded is None


def test_fallback_template_for_tokenizers_without_one(engine):
    class Plain:
        chat_template = None

    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
    text = render_prompt(Plain(), messages)
    assert text == fallback_prompt(messages)
    assert text.startswith("### System:\nS\n") and text.endswith("### Assistant:\n")
    assert "### User:\nHi" in text
    assert FALLBACK_STOP_STRINGS[0] == "\n### User:"
