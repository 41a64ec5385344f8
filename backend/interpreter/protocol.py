"""What the model reads and writes in Code Interpreter mode: the system prompt, the code in its
reply (a fenced python block, or an `interpreter` tool call), observations, prompt messages.

Follows ChatGLM3's code-interpreter convention (shared/formats.md): the code is a python fence,
the observation wraps the result in a `result` fence, an image is written as `[Image]`.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.interpreter.kernel import ExecutionResult

OBSERVATION_CHARS = 2000
INTERPRETER_TOOL_NAMES = ("interpreter", "python", "code_interpreter", "execute_python", "run_code")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py|ipython)[ \t]*\r?\n(.*?)\r?\n[ \t]*```", re.S | re.I)
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


@dataclass(frozen=True)
class CodeBlock:
    """Code found in a reply, and where its block ends (text after it is not the model's to say)."""

    code: str
    end: int


def system_prompt(workdir: Path, extra: str = "") -> str:
    """Tell the model it has a Python kernel without network, and where the files are."""
    prompt = (
        "You are an AI assistant connected to a Python (Jupyter) kernel on a computer without "
        "network access. To run Python code, write it in a single ```python code block and stop; "
        "you then get its output in a ```result block and continue. If the result is an error, "
        f"fix the code and try again. Files the user uploads are stored in {workdir}, which is "
        "the kernel's working directory; files your code writes there can be downloaded by the "
        "user. Plots made with matplotlib are shown to the user."
    )
    return f"{prompt}\n\n{extra.strip()}" if extra.strip() else prompt


def _tool_call_code(payload: str) -> str | None:
    try:
        call = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(call, dict) or call.get("name") not in INTERPRETER_TOOL_NAMES:
        return None
    args: Any = call.get("arguments", call.get("parameters"))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return args  # some models put the code itself there
    if isinstance(args, dict):
        code = args.get("code") or args.get("source") or args.get("script")
        return code if isinstance(code, str) else None
    return None


def extract_code(text: str) -> CodeBlock | None:
    """The first complete python block or interpreter tool call in `text`, if any."""
    found: list[CodeBlock] = []
    fence = _FENCE.search(text)
    if fence:
        found.append(CodeBlock(textwrap.dedent(fence.group(1)), fence.end()))
    for call in _TOOL_CALL.finditer(text):
        code = _tool_call_code(call.group(1))
        if code is not None:
            found.append(CodeBlock(code, call.end()))
            break
    found = [block for block in found if block.code.strip()]
    return min(found, key=lambda block: block.end) if found else None


def shorten(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters, keeping its start and its end (where errors are)."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 3
    return f"{text[:head]}\n[… {len(text) - head - tail:,} characters left out …]\n{text[-tail:]}"


def format_observation(result: ExecutionResult, limit: int = OBSERVATION_CHARS) -> str:
    """The result of a run as the model sees it: text (shortened), `[Image]` per image."""
    parts = ["[Image]" if out.kind == "image" else out.text.rstrip("\n") for out in result.outputs]
    body = shorten("\n".join(part for part in parts if part), limit)
    return f"```result\n{body or '(no output)'}\n```"


def observation_role(tokenizer: Any) -> str:
    """"observation" for tokenizers that have ChatGLM's `<|observation|>` turn, else "user"."""
    added = getattr(tokenizer, "added_tokens_encoder", None) or {}
    if "<|observation|>" in added:
        return "observation"
    try:
        unk = getattr(tokenizer, "unk_token_id", None)
        token = tokenizer.convert_tokens_to_ids("<|observation|>")
        return "observation" if token is not None and token != unk else "user"
    except (AttributeError, KeyError, TypeError, ValueError):
        return "user"


def prompt_messages(
    history: list[dict], system: str, obs_role: str = "observation",
) -> list[dict]:
    """The conversation for the model: system first, observations under `obs_role`, and
    consecutive turns of one role merged (templates want user and assistant to alternate)."""
    messages = [{"role": "system", "content": system}] if system else []
    for entry in history:
        role = obs_role if entry["role"] == "observation" else entry["role"]
        content = entry.get("content") or ""
        if messages and messages[-1]["role"] == role and role != "system":
            messages[-1]["content"] += f"\n\n{content}"
        else:
            messages.append({"role": role, "content": content})
    return messages
