"""Conversation export: JSON and Markdown."""

from __future__ import annotations

import json
from datetime import UTC, datetime


def to_json(messages: list[dict], meta: dict | None = None) -> str:
    payload = {
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(meta or {}),
        "messages": messages,
    }
    return json.dumps(payload, ensure_ascii=False, indent=2)


def to_markdown(messages: list[dict], title: str = "Conversation") -> str:
    lines = [f"# {title}", ""]
    for message in messages:
        lines += [f"## {message['role'].capitalize()}", "", str(message.get("content", "")), ""]
        stats = message.get("stats")
        if stats:
            lines += [f"*{stats.get('new_tokens', 0)} tokens, "
                      f"{stats.get('tokens_per_s', 0):.1f} tokens/s*", ""]
    return "\n".join(lines)
