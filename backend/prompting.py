"""Conversation to prompt tokens: the chat template, a fallback format, fitting the context.

Fallback format, for tokenizers without a chat template (documented in the README)::

    ### System:
    {system prompt}

    ### User:
    {message}

    ### Assistant:
    {reply}

Generation stops when the model starts a new `### User:` block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FALLBACK_STOP_STRINGS = ("\n### User:", "\n### System:")
_FALLBACK_HEADERS = {"system": "System", "user": "User", "assistant": "Assistant"}


class PromptTooLongError(ValueError):
    """Even the newest message alone does not fit in the model's context."""


@dataclass
class FittedPrompt:
    """Prompt tokens that fit the context, and how many old messages were dropped for that."""

    input_ids: list[int]
    dropped_messages: int
    messages: list[dict]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _plain(messages: list[dict]) -> list[dict]:
    """Keep only the keys a chat template knows (history entries carry stats too)."""
    keys = ("role", "content", "name", "tool_calls", "tool_call_id")
    return [{k: m[k] for k in keys if k in m} for m in messages]


def fallback_prompt(messages: list[dict], add_generation_prompt: bool = True) -> str:
    parts = []
    for message in messages:
        header = _FALLBACK_HEADERS.get(message["role"], message["role"].capitalize())
        parts.append(f"### {header}:\n{message['content']}\n")
    if add_generation_prompt:
        parts.append("### Assistant:\n")
    return "\n".join(parts)


def render_prompt(
    tokenizer: Any, messages: list[dict], tools: list[dict] | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text for `messages`, from the chat template when there is one."""
    if not has_chat_template(tokenizer):
        return fallback_prompt(_plain(messages), add_generation_prompt)
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": add_generation_prompt}
    if tools:
        kwargs["tools"] = tools
    return tokenizer.apply_chat_template(_plain(messages), **kwargs)


def encode_prompt(
    tokenizer: Any, messages: list[dict], tools: list[dict] | None = None,
) -> list[int]:
    text = render_prompt(tokenizer, messages, tools)
    # The template already holds BOS and friends; adding them again would double them.
    add_special = not has_chat_template(tokenizer)
    return tokenizer(text, add_special_tokens=add_special)["input_ids"]


def fit_to_context(
    tokenizer: Any, messages: list[dict], max_new_tokens: int, context_length: int,
    tools: list[dict] | None = None,
) -> FittedPrompt:
    """Drop the oldest turns (never the system prompt nor the newest message) until it fits."""
    budget = context_length - max_new_tokens
    system = [m for m in messages[:1] if m["role"] == "system"]
    rest = messages[len(system):]
    dropped = 0
    while True:
        kept = system + rest[dropped:]
        ids = encode_prompt(tokenizer, kept, tools)
        if len(ids) <= budget:
            return FittedPrompt(ids, dropped, kept)
        if len(rest) - dropped <= 1:
            raise PromptTooLongError(
                f"The message is {len(ids):,} tokens long; with max_new_tokens={max_new_tokens} "
                f"it does not fit the model's context of {context_length:,} tokens. "
                "Shorten it or lower max_new_tokens."
            )
        dropped += 1
        # Never start the kept history with an assistant/observation turn.
        while len(rest) - dropped > 1 and rest[dropped]["role"] != "user":
            dropped += 1
