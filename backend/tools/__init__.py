"""Tool mode's backend: registry, built-in tools, call parsing, dispatch and the loop.

`parse_tool_calls(text)` is the public parser: a list of calls with `.name`, `.arguments` and
`.error`. See `registry` for where user tools are loaded from (``$WORKBENCH_TOOLS_DIR``).
"""

from backend.tools.parsing import ToolCall, parse_tool_calls

__all__ = ["ToolCall", "parse_tool_calls"]
