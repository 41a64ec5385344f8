"""How the tools reach the model, and which role carries a tool's result back.

When the tokenizer's chat template uses `tools` (rendering with tools changes the prompt), the
schemas go through the template. Otherwise (SmolLM2's template ignores them, as does the plain
fallback format) the system prompt lists them as JSON after ChatGLM3's sentence
"Answer the following questions as best as you can. You have access to the following tools:",
followed by one line on how to call a tool.

Observations use the role `observation` when the template knows it (ChatGLM3, GLM-4), else
`tool`, else `user` for templates that reject both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from backend.prompting import has_chat_template, render_prompt

TOOLS_SENTENCE = ("Answer the following questions as best as you can. "
                  "You have access to the following tools:")
CALL_HINT = ('To use a tool, reply with only a JSON object such as '
             '{"name": "<tool name>", "arguments": {"<parameter>": <value>}}. The tool\'s result '
             'comes back in the next message; then answer the question with it.')
_PROBE_TOOL = {"type": "function", "function": {
    "name": "probe_tool_zq7", "description": "probe",
    "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}


def _template_text(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None) or ""
    return json.dumps(template) if isinstance(template, dict) else str(template)


def template_accepts_tools(tokenizer: Any) -> bool:
    """True when the chat template renders `tools` (the prompt changes when tools are given)."""
    if not has_chat_template(tokenizer):
        return False
    probe = [{"role": "user", "content": "ping"}]
    try:
        return render_prompt(tokenizer, probe) != render_prompt(tokenizer, probe, [_PROBE_TOOL])
    except Exception:  # noqa: BLE001 - a template that breaks on tools does not take them
        return False


def observation_role(tokenizer: Any) -> str:
    """The role a tool result is sent with: the first of observation / tool / user that renders."""
    candidates = ["tool", "user"]
    if "observation" in _template_text(tokenizer):
        candidates.insert(0, "observation")
    for role in candidates:
        probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                 {"role": role, "content": "r"}]
        try:
            render_prompt(tokenizer, probe)
            return role
        except Exception:  # noqa: BLE001 - strict templates raise on roles they do not know
            continue
    return "user"


def system_tools_text(schemas: list[dict]) -> str:
    """ChatGLM3's tool listing: the sentence, the JSON list, and how to call."""
    listing = json.dumps(schemas, ensure_ascii=False)  # compact: every token costs on a CPU
    return f"{TOOLS_SENTENCE}\n{listing}\n\n{CALL_HINT}"


@dataclass
class ToolPrompt:
    """Turns the Tool-mode history into the messages (and `tools`) a model turn is sent."""

    schemas: list[dict]  # ChatGLM3 style: name, description, parameters
    via_template: bool
    observation_role: str = "tool"
    system_prompt: str = ""

    def template_tools(self) -> list[dict] | None:
        if not self.via_template or not self.schemas:
            return None
        return [{"type": "function", "function": schema} for schema in self.schemas]

    def system_text(self) -> str:
        parts = []
        if self.schemas and not self.via_template:
            parts.append(system_tools_text(self.schemas))
        if self.system_prompt.strip():
            parts.append(self.system_prompt.strip())
        return "\n\n".join(parts)

    def messages(self, history: list[dict]) -> list[dict]:
        system = self.system_text()
        out = [{"role": "system", "content": system}] if system else []
        for entry in history:
            content = entry.get("content") or ""
            if "tool_result" not in entry:
                out.append({"role": entry["role"], "content": content})
            elif self.observation_role == "user":  # templates that know no tool role
                name = entry.get("name") or "the tool"
                out.append({"role": "user", "content": f"Observation from {name}: {content}"})
            else:
                out.append({"role": self.observation_role, "content": content,
                            "name": entry.get("name") or ""})
        return out


def build_tool_prompt(tokenizer: Any, schemas: list[dict], system_prompt: str = "") -> ToolPrompt:
    """The ToolPrompt for `tokenizer`: template `tools` when it takes them, else system text."""
    return ToolPrompt(schemas, template_accepts_tools(tokenizer), observation_role(tokenizer),
                      system_prompt)
