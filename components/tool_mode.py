"""Tool mode of the main page: the model calls tools; each call and its result show in the chat.

Sidebar: round limit, tool-calling sampling, which tools are offered, the opt-in shell tool,
manual mode. Manual mode: the tool list is edited as JSON or YAML in the page, and when the model
calls a tool that has no Python function, the user types its result.
"""

from __future__ import annotations

import dataclasses
import json

import streamlit as st

from backend.sampling import PRESETS, SamplingSettings
from backend.tools.builtin import builtin_registry
from backend.tools.loop import (
    DEFAULT_MAX_ROUNDS,
    LoopHooks,
    LoopOutcome,
    ToolLoop,
    TurnReply,
    close_interrupted,
    is_user_turn,
    pending_calls,
)
from backend.tools.manual import ToolListError, parse_tool_list, tool_list_text
from backend.tools.parsing import ToolCall
from backend.tools.prompting import ToolPrompt, build_tool_prompt
from backend.tools.registry import ToolRegistry, load_tools_dir, merge_user_tools
from components.chat_input import take_user_message
from components.chat_view import render_export
from components.model_cache import get_engine
from components.reply_stream import stream_reply
from components.tool_view import TOOL_AVATAR, render_tool_history, render_tool_result

MODE = "tool"
# Tool mode's settings. Streamlit drops a widget's state when a run does not draw it (as in Chat
# mode), so the values are also kept under _SAVED and put back: switching modes wipes nothing.
_DEFAULTS = {"tool_max_rounds": DEFAULT_MAX_ROUNDS, "tool_sampling": True, "tool_shell": False,
             "tool_manual": False}
_SAVED = "tool_settings"
_OUTCOME_ICONS = {"max_rounds": "⚠️", "failed": "⚠️", "stopped": "⏹️"}


def _history() -> list[dict]:
    return st.session_state.setdefault("histories", {}).setdefault(MODE, [])


def _clear() -> None:
    _history().clear()
    for key in ("tool_notice", "tool_observations", "tool_confirmations"):
        st.session_state.pop(key, None)


def _restore(defaults: dict) -> None:
    saved = st.session_state.setdefault(_SAVED, {})
    for key, default in defaults.items():
        if key not in st.session_state:
            st.session_state[key] = saved.get(key, default)


def _save(keys) -> None:
    saved = st.session_state.setdefault(_SAVED, {})
    saved.update({key: st.session_state[key] for key in keys if key in st.session_state})


def _sidebar(all_names: list[str], load_errors: list[str], folder: str) -> None:
    _restore({**_DEFAULTS, "tool_enabled": all_names})
    st.session_state["tool_enabled"] = [n for n in st.session_state["tool_enabled"]
                                        if n in all_names]
    with st.sidebar.expander("Tools", expanded=True):
        st.number_input("Max tool rounds", min_value=1, max_value=20, step=1,
                        key="tool_max_rounds",
                        help="Model replies that call tools, per question; then the loop stops.")
        st.checkbox("Tool-calling sampling (temperature 0, top_p 0.7)", key="tool_sampling",
                    help="Overrides the sampling sliders in Tool mode.")
        st.multiselect("Tools offered to the model", all_names, key="tool_enabled")
        st.checkbox("Enable the shell tool (asks you before every command)", key="tool_shell",
                    help="Adds run_shell_command. Each call waits for your Run / Decline; "
                         "commands time out.")
        st.toggle("Manual mode", key="tool_manual",
                  help="Edit the tool list yourself (JSON or YAML) and type the result of tools "
                       "that have no Python function.")
        st.caption(f"User tools folder: `{folder}` (set WORKBENCH_TOOLS_DIR to change it)")
        for error in load_errors:
            st.warning(error, icon="🧩")
    _save([*_DEFAULTS, "tool_enabled"])


def _registry() -> tuple[ToolRegistry, list[str], list[str], str]:
    """All tools (built-ins, user tools, shell if enabled), load errors, the selectable names
    (the shell tool has its own checkbox), and the user tools folder."""
    shell = st.session_state.get("tool_shell", st.session_state.get(_SAVED, {}).get("tool_shell"))
    registry = builtin_registry(include_shell=bool(shell))
    loaded = load_tools_dir()
    errors = merge_user_tools(registry, loaded)
    names = [t.name for t in registry if not t.needs_confirmation]
    return registry, errors, names, str(loaded.folder)


def _manual_tools(registry: ToolRegistry) -> ToolRegistry | None:
    """Manual mode's tool list editor; the registry it describes, or None while it is invalid."""
    if "tool_list_text" not in st.session_state:  # the dump only when there is nothing to show
        _restore({"tool_list_text": tool_list_text(registry.schemas())})
    st.text_area("Tool list (JSON or YAML)", key="tool_list_text", height=240,
                 help="A list of {name, description, parameters}. Tools whose name matches a "
                      "Python tool run it; for the others you type the result.")
    _save(["tool_list_text"])
    try:
        schemas = parse_tool_list(st.session_state["tool_list_text"])
    except ToolListError as exc:
        st.error(f"{exc} The model cannot be asked until the list is fixed.", icon="🧾")
        return None
    manual = registry.with_schemas(schemas)
    typed = [t.name for t in manual if t.function is None]
    st.caption(f"{len(manual)} tool(s). " + (f"You type the result of: {', '.join(typed)}."
                                             if typed else "All have a Python function."))
    return manual


def _pending_controls(history: list[dict], tools: ToolRegistry) -> bool:
    """Forms for a paused loop (typed observation, shell consent). True when one is shown."""
    pending = pending_calls(history)
    if not pending:
        return False
    item = pending[0]
    call, tool = item.call, tools.get(item.call.name)
    with st.chat_message("tool", avatar=TOOL_AVATAR):
        st.markdown(f"The model calls **{call.name}** with:")
        st.code(json.dumps(call.arguments, ensure_ascii=False, indent=2), language="json")
        if tool is not None and tool.function is None:
            st.text_area(f"Result of {call.name} (sent to the model as the observation)",
                         key=f"tool_obs_{item.key}")
            if st.button("Send result", key=f"tool_obs_send_{item.key}", type="primary"):
                text = st.session_state.get(f"tool_obs_{item.key}", "")
                st.session_state.setdefault("tool_observations", {})[item.key] = text
                st.session_state["tool_pending"] = True
        elif tool is not None and tool.needs_confirmation:
            st.warning("This runs on your computer. Run it?", icon="⚠️")
            cols = st.columns(2)
            if cols[0].button("Run", key=f"tool_confirm_{item.key}", type="primary",
                              width="stretch"):
                st.session_state.setdefault("tool_confirmations", {})[item.key] = True
                st.session_state["tool_pending"] = True
            if cols[1].button("Decline", key=f"tool_decline_{item.key}", width="stretch"):
                st.session_state.setdefault("tool_confirmations", {})[item.key] = False
                st.session_state["tool_pending"] = True
        elif st.button("Run the pending call", key=f"tool_resume_{item.key}"):
            st.session_state["tool_pending"] = True
    return True


def _ui_turn(history: list[dict], settings: SamplingSettings, prompt: ToolPrompt):
    """A model turn streamed into the page (Stop button included)."""

    def turn(_history: list[dict]) -> TurnReply:
        scratch: list[dict] = []
        try:
            sent = stream_reply(prompt.messages(history), settings, scratch,
                                stop_key=f"tool_stop_{len(history)}",
                                tools=prompt.template_tools())
        except BaseException:  # Stop reruns the script: keep the partial reply
            if scratch:
                history.append({**scratch[-1], "stopped": True})
            raise
        if not sent or not scratch:
            return TurnReply("", failed="it does not fit the model's context with "
                                        f"max_new_tokens={settings.max_new_tokens}.")
        entry = scratch[-1]
        extra = {k: entry[k] for k in ("stats", "notice") if k in entry}
        return TurnReply(entry["content"], stopped=bool(entry.get("stopped")), extra=extra)

    return turn


def _ui_hooks() -> LoopHooks:
    waiting: dict[str, object] = {}

    def on_wait(call: ToolCall, seconds: float) -> None:
        if call is not waiting.get("call"):
            waiting["call"] = call
            with st.chat_message("tool", avatar=TOOL_AVATAR):
                waiting["status"] = st.empty()
                st.button("Stop", icon=":material/stop_circle:",
                          key=f"tool_run_stop_{len(_history())}",
                          help="Stop the tool run; the conversation so far is kept.")
        waiting["status"].info(f"Running **{call.name}**… {seconds:.1f} s", icon="⏳")

    def on_observation(entry: dict) -> None:
        waiting.clear()
        with st.chat_message("tool", avatar=TOOL_AVATAR):
            render_tool_result(entry, f"live_{len(_history())}")

    def observe(call: ToolCall, key: str) -> str | None:  # each answer is used once
        return st.session_state.get("tool_observations", {}).pop(key, None)

    def confirm(call: ToolCall, key: str) -> bool | None:
        return st.session_state.get("tool_confirmations", {}).pop(key, None)

    return LoopHooks(on_wait=on_wait, on_observation=on_observation, observe=observe,
                     confirm=confirm)


def _run_loop(history: list[dict], settings: SamplingSettings, system_prompt: str,
              tools: ToolRegistry) -> None:
    loaded = get_engine().loaded
    prompt = build_tool_prompt(loaded.tokenizer, tools.schemas(), system_prompt)
    loop = ToolLoop(_ui_turn(history, settings, prompt), tools, prompt.observation_role,
                    max_rounds=int(st.session_state.get("tool_max_rounds", DEFAULT_MAX_ROUNDS)),
                    hooks=_ui_hooks())
    outcome: LoopOutcome | None = None
    try:
        outcome = loop.run(history)
    finally:
        if outcome is None:  # interrupted (Stop, or another widget rerunning the page)
            close_interrupted(history, prompt.observation_role)
    message = outcome.message
    if outcome.status == "failed" and history and is_user_turn(history[-1]):
        rejected = history.pop()["content"]  # never sent: the next question must not carry it
        message = (f"Your message ({len(rejected):,} characters) was not sent: {message} "
                   "Shorten it, or clear the conversation.")
    if message and not outcome.paused and outcome.status != "answered":
        st.session_state["tool_notice"] = (outcome.status, message)


def _settings(settings: SamplingSettings) -> SamplingSettings:
    if not st.session_state.get("tool_sampling", True):
        return settings
    temperature, top_p = PRESETS["Tool calling"]
    return dataclasses.replace(settings, temperature=temperature, top_p=top_p)


def render_tool_mode(settings: SamplingSettings, system_prompt: str, model_ready: bool) -> None:
    """Draw Tool mode and, after a new message or a resumed pause, run the tool loop."""
    history = _history()
    registry, load_errors, all_names, folder = _registry()
    _sidebar(all_names, load_errors, folder)
    chosen = [n for n in st.session_state.get("tool_enabled", all_names) if n in all_names]
    offered = registry.subset([*chosen, *(t.name for t in registry if t.needs_confirmation)])
    tools = _manual_tools(registry) if st.session_state.get("tool_manual") else offered

    cols = st.columns([1, 3])
    cols[0].button("Clear", icon=":material/delete:", on_click=_clear, key="tool_clear",
                   width="stretch", disabled=not history)
    with cols[1]:
        render_export(history, {"mode": MODE, "system_prompt": system_prompt,
                                "tools": tools.schemas() if tools else [],
                                "settings": settings.to_dict()}, key=MODE)
    if tools is not None and not len(tools):
        st.info("No tool is offered: the model answers without tools. Pick some in the sidebar.")
    render_tool_history(history)
    notice = st.session_state.get("tool_notice")
    if notice:
        st.warning(notice[1], icon=_OUTCOME_ICONS.get(notice[0], "ℹ️"))
    paused = tools is not None and _pending_controls(history, tools)

    submitted = take_user_message(
        history, "Ask something a tool can help with", key="tool_input",
        pending_key="tool_pending", disabled=not model_ready or tools is None,
        clear_key="tool_notice",
    )
    if not submitted and paused and not st.session_state.get("tool_pending"):
        st.caption("The model waits for the tool call above before it goes on.")

    if st.session_state.pop("tool_pending", False) and model_ready and tools is not None:
        _run_loop(history, _settings(settings), system_prompt, tools)
        st.rerun()
