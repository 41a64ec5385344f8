"""Training data: every format converts to the right trained spans; bad files give clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import write_jsonl

from backend.training.collate import PackedDataset, PackingCollator, PaddingCollator, pack
from backend.training.data import check_data, load_data
from backend.training.encoding import IGNORE_INDEX, ChatEncoder
from backend.training.errors import DataError

END = "<|im_end|>\n"  # SmolLM2's end of turn, trained with every assistant turn


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from backend.default_model import ensure_default_model

    return AutoTokenizer.from_pretrained(ensure_default_model())


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine, two threads fight other tests (~10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def trained_text(tokenizer, example) -> str:
    return tokenizer.decode([i for i, lab in zip(example.input_ids, example.labels, strict=True)
                             if lab != IGNORE_INDEX])


def untrained_text(tokenizer, example) -> str:
    return tokenizer.decode([i for i, lab in zip(example.input_ids, example.labels, strict=True)
                             if lab == IGNORE_INDEX])


def one(tokenizer, tmp_path, record, max_length=1024, **kw):
    data = load_data(write_jsonl(tmp_path / "d.jsonl", [record]), tokenizer, max_length, **kw)
    assert len(data.examples) == 1
    return data.conversations[0], data.examples[0]


def test_chatglm3_tools_and_tool_role(tokenizer, tmp_path):
    record = {
        "tools": [{"name": "get_current_weather", "description": "weather",
                   "parameters": {"type": "object",
                                  "properties": {"location": {"type": "string"}}}}],
        "conversations": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the weather in Beijing?"},
            {"role": "assistant", "content": "Let me check."},
            {"role": "tool", "name": "get_current_weather", "parameters": {"location": "beijing"},
             "observation": {"temperature": 22}},
            {"role": "assistant", "content": "It is 22 degrees Celsius."},
        ],
    }
    conv, ex = one(tokenizer, tmp_path, record)
    assert conv.format == "chatglm3"
    assert [t.role for t in conv.turns] == ["system", "user", "assistant", "assistant",
                                            "observation", "assistant"]
    call = "get_current_weather\n```python\ntool_call(location='beijing')\n```"
    assert trained_text(tokenizer, ex) == (
        f"Let me check.{END}{call}{END}It is 22 degrees Celsius.{END}"
    )
    rest = untrained_text(tokenizer, ex)
    assert '"temperature": 22' in rest  # the observation is in the text, not trained
    assert "You have access to the following tools:" in rest and '"get_current_weather"' in rest
    assert "Be brief." in rest and "What is the weather in Beijing?" in rest


def test_loss_flag_overrides_role(tokenizer, tmp_path):
    record = {"conversations": [
        {"role": "user", "content": "first question", "loss": True},
        {"role": "assistant", "content": "first answer", "loss": False},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "second answer"},
    ]}
    _, ex = one(tokenizer, tmp_path, record)
    trained = trained_text(tokenizer, ex)
    assert "first question" in trained and "second answer" in trained
    assert "first answer" not in trained and "second question" not in trained


def test_messages_with_tools_and_observation(tokenizer, tmp_path):
    tools = [{"type": "function", "function": {"name": "get_recommended_books",
                                               "parameters": {"type": "object"}}}]
    call = json.dumps({"name": "get_recommended_books", "arguments": {"interests": ["history"]}})
    record = {"messages": [
        {"role": "system", "content": "", "tools": tools},
        {"role": "user", "content": "I like history."},
        {"role": "assistant", "content": call},
        {"role": "observation", "content": "{\"books\": [\"Sapiens\"]}"},
        {"role": "assistant", "content": "You might enjoy Sapiens."},
    ]}
    conv, ex = one(tokenizer, tmp_path, record)
    assert conv.format == "messages"
    assert conv.turns[0].content.startswith("Answer the following questions")
    assert trained_text(tokenizer, ex) == f"{call}{END}You might enjoy Sapiens.{END}"
    assert "Sapiens\"]}" in untrained_text(tokenizer, ex)


def test_openai_tool_calls_and_tool_role(tokenizer, tmp_path):
    record = {"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "weather",
                                              "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "content": "18 C"},
        {"role": "assistant", "content": "18 degrees."},
    ]}
    conv, ex = one(tokenizer, tmp_path, record)
    assert [t.role for t in conv.turns] == ["user", "assistant", "observation", "assistant"]
    assert trained_text(tokenizer, ex) == (
        '{"name": "weather", "arguments": {"city": "Paris"}}' + END + "18 degrees." + END
    )


@pytest.mark.parametrize("record, kind, prompt, reply", [
    ({"instruction": "Translate", "input": "chat", "output": "cat"}, "alpaca",
     "Translate\nchat", "cat"),
    ({"content": "类型#上衣*版型#宽松", "summary": "这件衬衫的款式非常的宽松"}, "adgen",
     "类型#上衣*版型#宽松", "这件衬衫的款式非常的宽松"),
    ({"prompt": "2+2?", "response": "4"}, "prompt-response", "2+2?", "4"),
])
def test_single_turn_formats(tokenizer, tmp_path, record, kind, prompt, reply):
    conv, ex = one(tokenizer, tmp_path, record)
    assert conv.format == kind
    assert [(t.role, t.content) for t in conv.turns] == [("user", prompt), ("assistant", reply)]
    assert trained_text(tokenizer, ex) == reply + END
    assert prompt in untrained_text(tokenizer, ex)


def test_json_list_and_json_lines_in_a_json_file(tokenizer, tmp_path):
    records = [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": "d"}]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(records, indent=2), encoding="utf-8")
    lines = write_jsonl(tmp_path / "lines.json", records)
    for path in (listed, lines):
        data = load_data(path, tokenizer, 256)
        assert [c.turns[-1].content for c in data.conversations] == ["b", "d"]


def test_marked_preview_pieces(tokenizer):
    from backend.training.formats import Turn

    pieces = ChatEncoder(tokenizer).marked_pieces(
        [Turn("user", "hi", False, 1), Turn("assistant", "hello", True, 2)])
    assert [p for p, trained in pieces if trained] == ["hello" + END]
    assert "".join(p for p, _ in pieces).endswith("<|im_start|>assistant\nhello" + END)


# --- bad input -------------------------------------------------------------------------------
def problems(tokenizer, path, max_length=512, **kw) -> str:
    report = check_data(path, tokenizer, max_length, **kw).report
    assert not report.ok
    with pytest.raises(DataError) as info:
        load_data(path, tokenizer, max_length, **kw)
    assert str(info.value).strip()
    return "\n".join(report.problems)


def test_malformed_jsonl_names_line(tokenizer, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n\n{"prompt": "c", "response": \n',
                    encoding="utf-8")
    text = problems(tokenizer, path)
    assert "bad.jsonl" in text and "record 2, line 3" in text and "malformed JSON" in text


def test_malformed_json_list_names_line_and_column(tokenizer, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n {"prompt": "a", "response": "b"},\n {"prompt": }\n]', encoding="utf-8")
    assert "line 3, column" in problems(tokenizer, path)


@pytest.mark.parametrize("content", [b"", b"  \n\n", b"[]"])
def test_empty_file(tokenizer, tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    assert "empty" in problems(tokenizer, path)


def test_non_utf8_bytes_name_the_line(tokenizer, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"prompt": "a", "response": "b"}\n{"prompt": "caf\xe9", "response": "x"}\n')
    text = problems(tokenizer, path)
    assert "line 2" in text and "UTF-8" in text


def test_missing_file(tokenizer, tmp_path):
    assert "not found" in problems(tokenizer, tmp_path / "nope.jsonl")


@pytest.mark.parametrize("conversation, expected", [
    ([{"role": "user", "content": "a"}], "no assistant turn"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
      {"role": "assistant", "content": "c"}], "two user messages in a row (messages 1 and 2)"),
    ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}],
     "message 1: an assistant message must follow"),
    ([{"role": "user", "content": "a"}, {"role": "observation", "content": "b"},
      {"role": "assistant", "content": "c"}], "message 2: an observation must follow"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
      {"role": "system", "content": "c"}], "message 3: a system message may only come first"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "loss": "yes"}],
     "'loss' must be true or false"),
    ([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}], "unknown role"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "loss": False}],
     "nothing to train on"),
])
def test_bad_conversations(tokenizer, tmp_path, conversation, expected):
    path = write_jsonl(tmp_path / "conv.jsonl", [
        {"prompt": "fine", "response": "fine"}, {"conversations": conversation}])
    text = problems(tokenizer, path)
    assert "conv.jsonl: record 2, line 2" in text
    assert expected in text


def test_unknown_record_shape_and_problem_count(tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"question": "a", "answer": "b"}, ["not", "an", "object"], {"prompt": "a", "response": 3},
        {"prompt": "ok", "response": "ok"}])
    report = check_data(path, tokenizer, 256).report
    assert report.problem_count == 3 and report.records == 4
    text = "\n".join(report.problems)
    assert "record 1, line 1: unknown format" in text and "its keys: answer, question" in text
    assert "record 2, line 2: expected a JSON object" in text
    assert "record 3, line 3: 'response' must be a string" in text


def test_long_records_policies(tokenizer, tmp_path):
    long_reply = " ".join(["banana"] * 200)
    path = write_jsonl(tmp_path / "long.jsonl", [
        {"prompt": "short", "response": "ok"}, {"prompt": "tell", "response": long_reply}])
    text = problems(tokenizer, path, max_length=64)
    assert "record 2, line 2" in text and "longer than the maximum length 64" in text

    truncated = load_data(path, tokenizer, 64, long_records="truncate")
    assert truncated.report.truncated == 1 and len(truncated.examples) == 2
    assert len(truncated.examples[1].input_ids) == 64 and truncated.examples[1].truncated
    assert "1 truncated" in truncated.report.summary()

    dropped = load_data(path, tokenizer, 64, long_records="drop")
    assert dropped.report.dropped == 1 and len(dropped.examples) == 1


def test_truncation_that_leaves_nothing_trained_drops_the_record(tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": " ".join(["word"] * 200), "response": "answer"},
        {"prompt": "q", "response": "a"}])
    data = load_data(path, tokenizer, 64, long_records="truncate")
    assert data.report.dropped == 1 and len(data.examples) == 1
    assert any("no trained token left" in note for note in data.report.notes)


# --- batching --------------------------------------------------------------------------------
def test_pack_respects_capacity_and_keeps_every_example():
    lengths = [50, 30, 70, 20, 90, 10, 60, 40]
    rows = pack(lengths, 100, seed=1)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 100 for row in rows)
    assert len(rows) < len(lengths)
    assert pack(lengths, 100, seed=1) == rows  # deterministic: resume sees the same rows


def test_packing_gives_the_same_loss_as_separate_examples(tokenizer, tmp_path, one_thread):
    """Padding-free packing keeps examples apart: same loss as padded batches."""
    from transformers import AutoModelForCausalLM

    from backend.default_model import ensure_default_model

    records = [{"prompt": f"question {i}", "response": "answer " * (i + 1)} for i in range(4)]
    data = load_data(write_jsonl(tmp_path / "p.jsonl", records), tokenizer, 128)
    model = AutoModelForCausalLM.from_pretrained(ensure_default_model())
    rows = PackedDataset(data.examples, 128)
    assert len(rows) < len(data.examples)
    packed = PackingCollator()([rows[i] for i in range(len(rows))])
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    assert int((packed["position_ids"][0] == 0).sum()) == len(data.examples)
    padded = PaddingCollator(tokenizer.pad_token_id)(
        [{"input_ids": e.input_ids, "labels": e.labels} for e in data.examples])
    with torch.no_grad():
        loss_packed = model(**packed, use_cache=False).loss
        loss_padded = model(**padded, use_cache=False).loss
    assert torch.allclose(loss_packed, loss_padded, atol=1e-4)


def test_lean_loss_and_selective_checkpointing_change_nothing_but_memory(tokenizer, tmp_path,
                                                                         one_thread):
    """Same loss and same LoRA gradients as transformers' loss without checkpointing."""
    from transformers import AutoModelForCausalLM

    from backend.default_model import ensure_default_model
    from backend.training.loss import use_lean_loss
    from backend.training.modeling import apply_lora, enable_checkpointing

    records = [{"prompt": f"question {i}", "response": "answer " * (i + 2)} for i in range(4)]
    data = load_data(write_jsonl(tmp_path / "p.jsonl", records), tokenizer, 128)
    rows = [PackedDataset(data.examples, 128)[i] for i in range(2)]

    def run(lean: bool, checkpointing: str):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(ensure_default_model())
        model.config.use_cache = False
        enable_checkpointing(model, checkpointing)
        model = apply_lora(model, 8, 32, 0.1, ["q_proj", "v_proj"])
        for name, param in model.named_parameters():
            if "lora_B" in name:  # non-zero B, so that every LoRA weight gets a gradient
                torch.nn.init.normal_(param, std=0.02, generator=torch.Generator().manual_seed(1))
        if lean:
            use_lean_loss(model)
        model.train()
        batch = PackingCollator(trained_logits_only=lean)(rows)
        if lean:
            assert batch["shift_labels"].shape[1] == len(batch["logits_to_keep"]) > 0
        torch.manual_seed(123)  # the same dropout masks in every run
        out = model(**batch)
        loss = out.loss
        if lean:  # the frozen head is fused into the loss: no logits were made
            assert out.logits.shape[-1] == model.config.hidden_size
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
        return loss.detach(), grads

    loss_ref, grads_ref = run(lean=False, checkpointing="off")
    for lean, mode in ((True, "off"), (True, "selective"), (True, "full")):
        loss, grads = run(lean, mode)
        assert torch.allclose(loss, loss_ref, atol=1e-4), (lean, mode)
        assert (grads - grads_ref).abs().max() <= 1e-4 * grads_ref.abs().max(), (lean, mode)
    assert grads_ref.abs().max() > 0
