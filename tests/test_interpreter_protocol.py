"""What the model reads and writes: code extraction, observations, prompt messages."""

from __future__ import annotations

from pathlib import Path

from backend.interpreter import (
    ExecutionResult,
    Output,
    extract_code,
    format_observation,
    observation_role,
    prompt_messages,
    system_prompt,
)


def test_fenced_python_block_and_where_it_ends():
    text = "First I read it.\n```python\nimport pandas as pd\ndf = pd.read_csv('a.csv')\n```\n" \
           "It shows 3 rows."  # the tail is the model guessing: not kept
    block = extract_code(text)
    assert block.code == "import pandas as pd\ndf = pd.read_csv('a.csv')"
    assert text[:block.end].endswith("```")


def test_other_fences_and_unfinished_blocks_are_not_code():
    assert extract_code("```result\n42\n```") is None
    assert extract_code("```\nplain\n```") is None
    assert extract_code("```python\nprint(1)\n") is None  # still being written
    assert extract_code("```python\n\n```") is None
    assert extract_code("```Python3\n    x = 1\n    y = 2\n```").code == "x = 1\ny = 2"


def test_interpreter_tool_call():
    call = '<tool_call>\n{"name": "interpreter", "arguments": {"code": "print(2 ** 10)"}}\n' \
           '</tool_call>'
    assert extract_code(call).code == "print(2 ** 10)"
    as_string = ('<tool_call>{"name": "python", '
                 '"arguments": "{\\"code\\": \\"1 + 1\\"}"}</tool_call>')
    assert extract_code(as_string).code == "1 + 1"
    other = '<tool_call>{"name": "get_weather", "arguments": {"code": "x"}}</tool_call>'
    assert extract_code(other) is None


def test_observation_is_a_result_fence_with_images_and_truncation():
    result = ExecutionResult("ok", [Output("stdout", "rows: 3\n"), Output("image", data=b"png"),
                                    Output("result", "'done'")])
    assert format_observation(result) == "```result\nrows: 3\n[Image]\n'done'\n```"
    long = ExecutionResult("error", [Output("stdout", "a" * 5000),
                                     Output("error", "ValueError: bad value")])
    text = format_observation(long, limit=300)
    assert len(text) < 400 and "characters left out" in text
    assert text.rstrip("`\n").endswith("ValueError: bad value")  # the end (the error) is kept
    assert format_observation(ExecutionResult("ok", [])) == "```result\n(no output)\n```"


def test_prompt_messages_map_roles_and_merge_turns():
    history = [
        {"role": "user", "content": "I ran this code: ..."},
        {"role": "user", "content": "What is the mean?"},
        {"role": "assistant", "content": "```python\nx\n```", "code": "x"},
        {"role": "observation", "content": "```result\n1\n```", "outputs": []},
    ]
    glm = prompt_messages(history, "SYS", "observation")
    assert [m["role"] for m in glm] == ["system", "user", "assistant", "observation"]
    assert glm[1]["content"] == "I ran this code: ...\n\nWhat is the mean?"
    plain = prompt_messages(history, "", "user")
    assert [m["role"] for m in plain] == ["user", "assistant", "user"]
    assert set(plain[0]) == {"role", "content"}


def test_observation_role_follows_the_tokenizer():
    class Glm:
        added_tokens_encoder = {"<|observation|>": 5}

    class Other:
        added_tokens_encoder = {"<|im_end|>": 2}
        unk_token_id = 0

        def convert_tokens_to_ids(self, token):
            return 0

    assert observation_role(Glm()) == "observation"
    assert observation_role(Other()) == "user"


def test_system_prompt_names_the_folder_and_no_network():
    prompt = system_prompt(Path("/tmp/work/files"), "Answer in French.")
    assert "/tmp/work/files" in prompt and "without network" in prompt
    assert prompt.endswith("Answer in French.")
