"""The tool registry: plain Python functions as tools, their JSON schemas derived automatically.

A tool is a function with type hints and a docstring. Its schema comes from
`transformers.utils.get_json_schema` (Google-style ``Args:`` for parameter descriptions);
ChatGLM3-style parameters ``Annotated[type, "description", required]`` are accepted too, and then
need no ``Args:`` entry.

User tools
----------
Every ``*.py`` file in the tools folder is loaded, with no change to the app. The folder is
``$WORKBENCH_TOOLS_DIR`` when that variable is set, else ``~/.config/llm-workbench/tools``.
A file's tools are the functions in its module-level ``TOOLS`` list when it has one, else every
public function defined in the file (names starting with ``_`` are skipped). Files whose name
starts with ``_`` are skipped. Loading a file runs it like any Python module: it is the user's own
code (model text is never run). A file that fails to load, or a function whose schema cannot be
derived, is reported as a message and skipped; the other tools still load.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import sys
import threading
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

TOOLS_DIR_ENV = "WORKBENCH_TOOLS_DIR"
DEFAULT_TOOLS_DIR = Path("~/.config/llm-workbench/tools")
NAME_RE = re.compile(r"^[A-Za-z_][\w.\-]{0,63}$")


class ToolError(ValueError):
    """A tool cannot be registered; the message is meant for the user as it stands."""


@dataclass
class Tool:
    """One tool: its schema for the model, and the Python function that runs it (None in manual
    mode, where the user types the result)."""

    name: str
    description: str
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})
    function: Callable[..., Any] | None = None
    source: str = "builtin"
    needs_confirmation: bool = False
    timeout_s: float | None = None

    @property
    def schema(self) -> dict:
        """ChatGLM3-style entry: name, description, parameters."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    @property
    def template_schema(self) -> dict:
        """The OpenAI-style entry that chat templates expect in `tools`."""
        return {"type": "function", "function": self.schema}


def _annotated_meta(hint: Any) -> tuple[Any, str | None, bool | None]:
    """(bare type, description, required) from ``Annotated[type, "description", required]``."""
    if typing.get_origin(hint) is not typing.Annotated:
        return hint, None, None
    bare, *meta = typing.get_args(hint)
    description = next((m for m in meta if isinstance(m, str)), None)
    required = next((m for m in meta if isinstance(m, bool)), None)
    return bare, description, required


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def tool_schema(func: Callable[..., Any], name: str | None = None) -> dict:
    """The ChatGLM3-style schema (name, description, parameters) of `func`.

    Raises ToolError with a readable message when the function cannot be described.
    """
    from transformers.utils import get_json_schema
    from transformers.utils.chat_template_utils import (
        DocstringParsingException,
        TypeHintParsingException,
        parse_google_format_docstring,
    )

    label = name or getattr(func, "__name__", "tool")
    doc = inspect.getdoc(func)
    if not doc or not doc.strip():
        raise ToolError(f"Tool {label!r} has no docstring: add one that says what it does.")
    try:
        hints = typing.get_type_hints(func, include_extras=True)
        signature = inspect.signature(func)
    except Exception as exc:  # noqa: BLE001 - bad hints in user code
        raise ToolError(f"Tool {label!r}: its type hints cannot be read ({exc}).") from None
    main_doc, doc_args, returns = parse_google_format_docstring(doc.strip())
    doc_args = doc_args or {}
    params, lines, required = [], [], []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolError(f"Tool {label!r}: *args / **kwargs cannot be described to a model; "
                            "use named parameters.")
        if param.name not in hints:
            raise ToolError(f"Tool {label!r}: parameter {param.name!r} has no type hint.")
        bare, description, is_required = _annotated_meta(hints[param.name])
        description = description or doc_args.get(param.name) or param.name.replace("_", " ")
        lines.append(f"    {param.name}: {_one_line(description)}")
        params.append(param.replace(annotation=bare))
        if is_required if is_required is not None else param.default is param.empty:
            required.append(param.name)
    shim_doc = _one_line(main_doc or label) + "\n\n"
    if lines:
        shim_doc += "Args:\n" + "\n".join(lines) + "\n"
    if returns:
        shim_doc += f"\nReturns:\n    {_one_line(returns)}\n"

    def shim() -> None:  # described by the attributes set below; never called
        return None

    shim.__name__ = label
    shim.__doc__ = shim_doc
    shim.__annotations__ = {p.name: p.annotation for p in params}
    shim.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=inspect.Signature.empty)
    try:
        schema = get_json_schema(shim)["function"]
    except (DocstringParsingException, TypeHintParsingException) as exc:
        raise ToolError(f"Tool {label!r}: {exc}") from None
    parameters = schema["parameters"]
    parameters.pop("required", None)
    if required:
        parameters["required"] = required
    return {"name": label, "description": schema.get("description") or label,
            "parameters": parameters}


class ToolRegistry:
    """Tools by name, in registration order."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> Tool:
        if not NAME_RE.match(tool.name):
            raise ToolError(f"{tool.name!r} is not a valid tool name (letters, digits, _ . -).")
        if tool.name in self._tools:
            raise ToolError(f"A tool named {tool.name!r} is already registered "
                            f"({self._tools[tool.name].source}).")
        self._tools[tool.name] = tool
        return tool

    def register(
        self, func: Callable[..., Any], *, name: str | None = None, source: str = "builtin",
        needs_confirmation: bool = False, timeout_s: float | None = None,
    ) -> Tool:
        """Add `func` as a tool; its schema is derived from its hints and docstring."""
        schema = tool_schema(func, name)
        return self.add(Tool(schema["name"], schema["description"], schema["parameters"], func,
                             source, needs_confirmation, timeout_s))

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self) -> list[dict]:
        """ChatGLM3-style list, as written into a system prompt."""
        return [tool.schema for tool in self._tools.values()]

    def template_schemas(self) -> list[dict]:
        """OpenAI-style list, as chat templates take it in `tools`."""
        return [tool.template_schema for tool in self._tools.values()]

    def subset(self, names: Iterable[str]) -> ToolRegistry:
        wanted = set(names)
        return ToolRegistry(t for t in self._tools.values() if t.name in wanted)

    def with_schemas(self, schemas: Iterable[dict]) -> ToolRegistry:
        """Manual mode: exactly the tools of `schemas` (name, description, parameters); those
        with a Python function of the same name here run it, the others wait for the user."""
        tools = []
        for schema in schemas:
            known = self._tools.get(schema["name"])
            base = known or Tool(schema["name"], "", source="manual")
            tools.append(replace(base, description=schema.get("description", ""),
                                 parameters=schema.get("parameters")
                                 or {"type": "object", "properties": {}}))
        return ToolRegistry(tools)


# -- user tools from a folder -------------------------------------------------------------------

def tools_dir() -> Path:
    """The user tools folder: $WORKBENCH_TOOLS_DIR, else ~/.config/llm-workbench/tools."""
    return Path(os.environ.get(TOOLS_DIR_ENV) or DEFAULT_TOOLS_DIR).expanduser()


@dataclass
class LoadedTools:
    """What a tools folder gave: the tools, and one readable message per problem."""

    tools: list[Tool]
    errors: list[str]
    folder: Path


_cache: dict[Path, tuple[tuple, LoadedTools]] = {}
_cache_lock = threading.Lock()


def _file_functions(module: Any) -> list[Callable[..., Any]]:
    listed = getattr(module, "TOOLS", None)
    if isinstance(listed, (list, tuple)):
        return [f for f in listed if callable(f)]
    return [obj for name, obj in vars(module).items()
            if inspect.isfunction(obj) and not name.startswith("_")
            and obj.__module__ == module.__name__]


def _load_file(path: Path) -> tuple[list[Tool], list[str]]:
    module_name = "workbench_user_tools." + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        return [], [f"{path.name}: cannot be loaded as a Python module."]
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code; report, do not crash
        sys.modules.pop(module_name, None)
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        return [], [f"{path.name}{where}: {type(exc).__name__}: {exc}"]
    tools, errors = [], []
    for func in _file_functions(module):
        try:
            schema = tool_schema(func)
        except ToolError as exc:
            errors.append(f"{path.name}: {exc}")
            continue
        tools.append(Tool(schema["name"], schema["description"], schema["parameters"], func,
                          source=str(path)))
    return tools, errors


def load_tools_dir(folder: Path | str | None = None) -> LoadedTools:
    """The user tools in `folder` (default: `tools_dir()`); files are re-read when they change."""
    folder = Path(folder).expanduser() if folder is not None else tools_dir()
    try:
        files = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_") and p.is_file())
        stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    except OSError as exc:
        return LoadedTools([], [f"The tools folder {folder} cannot be read: {exc}"], folder)
    with _cache_lock:
        cached = _cache.get(folder)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        tools: list[Tool] = []
        errors: list[str] = []
        for path in files:
            file_tools, file_errors = _load_file(path)
            tools += file_tools
            errors += file_errors
        loaded = LoadedTools(tools, errors, folder)
        _cache[folder] = (stamp, loaded)
        return loaded


def merge_user_tools(registry: ToolRegistry, loaded: LoadedTools) -> list[str]:
    """Add the user tools to `registry`; returns messages for the ones skipped (name clashes)."""
    errors = list(loaded.errors)
    for tool in loaded.tools:
        try:
            registry.add(tool)
        except ToolError as exc:
            errors.append(f"{Path(tool.source).name}: {exc} Skipped.")
    return errors
