"""Manual mode: the tool list as JSON or YAML text, parsed and checked with clear errors.

Accepted entries: ``{"name", "description", "parameters"}`` (ChatGLM3 style) or the OpenAI
wrapping ``{"type": "function", "function": {...}}``; the text is one list of them (a single
entry alone is taken as a list of one). ``parameters`` must be a JSON schema of type object.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from backend.tools.registry import NAME_RE

MAX_TEXT_CHARS = 200_000
MAX_TOOLS = 100
MAX_NODES = 20_000


class ToolListError(ValueError):
    """The tool list cannot be used; the message says where and why."""


def _count_nodes(value: Any, limit: int) -> int:
    """Nodes in a parsed document, counting stops past `limit` (YAML aliases can blow up)."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _load(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        raise ToolListError("The tool list is empty: write a JSON or YAML list of tools.")
    if len(text) > MAX_TEXT_CHARS:
        raise ToolListError(f"The tool list is longer than {MAX_TEXT_CHARS:,} characters.")
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        json_error = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    except RecursionError:
        raise ToolListError("The tool list is nested too deeply.") from None
    try:
        return yaml.safe_load(stripped)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid syntax"
        if stripped[0] in "[{":
            raise ToolListError(f"The tool list is not valid JSON: {json_error}.") from None
        raise ToolListError(f"The tool list is not valid YAML{where}: {problem}.") from None
    except RecursionError:
        raise ToolListError("The tool list is nested too deeply.") from None


def _check_entry(index: int, entry: Any) -> dict:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    label = f"Tool {index + 1}"
    if isinstance(entry, dict) and isinstance(entry.get("function"), dict):
        entry = entry["function"]
    if not isinstance(entry, dict):
        raise ToolListError(f"{label} is not an object with name, description and parameters.")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ToolListError(f"{label}: 'name' must be a tool name of letters, digits, _ . - "
                            f"(at most 64, not starting with a digit); got {name!r}.")
    label = f"Tool {index + 1} ({name})"
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise ToolListError(f"{label}: 'description' must be text.")
    parameters = entry.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise ToolListError(f"{label}: 'parameters' must be a JSON schema object.")
    if parameters.get("type", "object") != "object":
        raise ToolListError(f"{label}: 'parameters' must have type 'object'.")
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise ToolListError(f"{label}: 'parameters' is not a valid JSON schema at {path}: "
                            f"{exc.message}") from None
    except RecursionError:
        raise ToolListError(f"{label}: 'parameters' is nested too deeply.") from None
    required = parameters.get("required", [])
    properties = parameters.get("properties", {})
    missing = [r for r in required if isinstance(properties, dict) and r not in properties]
    if missing:
        raise ToolListError(f"{label}: required parameter(s) {', '.join(missing)} are not in "
                            "'properties'.")
    return {"name": name, "description": description, "parameters": parameters}


def parse_tool_list(text: str) -> list[dict]:
    """The tools of a JSON or YAML list (ChatGLM3-style dicts). Raises ToolListError."""
    value = _load(text)
    if _count_nodes(value, MAX_NODES) > MAX_NODES:
        raise ToolListError("The tool list is too large.")
    if isinstance(value, dict) and isinstance(value.get("tools"), list):
        value = value["tools"]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ToolListError("The tool list must be a list of tools (each with name, description "
                            "and parameters).")
    if len(value) > MAX_TOOLS:
        raise ToolListError(f"At most {MAX_TOOLS} tools.")
    tools = [_check_entry(i, entry) for i, entry in enumerate(value)]
    seen: set[str] = set()
    for tool in tools:
        if tool["name"] in seen:
            raise ToolListError(f"The tool name {tool['name']!r} appears twice.")
        seen.add(tool["name"])
    return tools


def tool_list_text(schemas: list[dict], fmt: str = "yaml") -> str:
    """Schemas as editable text, in "yaml" or "json"."""
    if fmt == "json":
        return json.dumps(schemas, ensure_ascii=False, indent=2)
    return yaml.safe_dump(schemas, allow_unicode=True, sort_keys=False, width=100)
