"""Code Interpreter mode of the main page: uploads, the model's code run in a per-session kernel,
outputs (text, tables, images) in the chat, files the code wrote, a box to run code yourself."""

from __future__ import annotations

import atexit
import logging
import os
import time
import uuid
from pathlib import Path

import streamlit as st

from backend.interpreter import (
    EngineTurn,
    FileInfo,
    KernelLimitError,
    KernelPool,
    KernelStartError,
    LoopSettings,
    Output,
    Step,
    UploadError,
    format_observation,
    list_files,
    observation_role,
    read_file,
    run_rounds,
    save_upload,
    system_prompt,
    upload_prefix,
)
from backend.interpreter.kernel import DEFAULT_TIMEOUT_S
from backend.interpreter.loop import DEFAULT_MAX_ROUNDS
from backend.model_loader import ModelLoadError
from backend.prompting import PromptTooLongError
from backend.sampling import SamplingSettings
from components.chat_input import take_user_message
from components.chat_view import render_export, render_message, render_stats
from components.model_cache import get_engine
from components.reply_stream import StreamRedraw, wait_notice

log = logging.getLogger(__name__)

MODE = "interpreter"
PROGRESS_INTERVAL_S = 0.25
_STATUS_NOTES = {"error": ("error", "The code raised an error."),
                 "timeout": ("warning", "The cell timed out."),
                 "died": ("error", "The kernel died and was restarted."),
                 "stopped": ("info", "Stopped.")}
_EXPECTED_ERRORS = (KernelLimitError, KernelStartError, PromptTooLongError, ModelLoadError)


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _session_is_active(key: str) -> bool:
    from streamlit.runtime import Runtime

    try:
        return not Runtime.exists() or Runtime.instance().is_active_session(key)
    except Exception:  # never reap on a doubt
        return True


@st.cache_resource(show_spinner=False)
def get_pool() -> KernelPool:
    """The process's kernel pool: $INTERPRETER_MAX_KERNELS (4) live kernels at most, reaped after
    $INTERPRETER_IDLE_MINUTES (30) idle minutes; $INTERPRETER_MEMORY_MB caps each kernel's address
    space (default: half the RAM, at least 4096; 0 turns the cap off)."""
    memory = os.environ.get("INTERPRETER_MEMORY_MB", "").strip()
    pool = KernelPool(max_kernels=int(_env_number("INTERPRETER_MAX_KERNELS", 4)),
                      idle_timeout_s=60 * _env_number("INTERPRETER_IDLE_MINUTES", 30),
                      is_active=_session_is_active,
                      memory_limit_mb=int(_env_number("INTERPRETER_MEMORY_MB", 0)) if memory
                      else None)
    pool.start_reaper()
    atexit.register(pool.close)
    return pool


def _key() -> str:
    """This browser session's kernel key (its Streamlit session id, so the reaper can tell)."""
    if "interpreter_key" not in st.session_state:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        st.session_state["interpreter_key"] = ctx.session_id if ctx else uuid.uuid4().hex
    return st.session_state["interpreter_key"]


def _history() -> list[dict]:
    return st.session_state.setdefault("histories", {}).setdefault(MODE, [])


def _flash(level: str, text: str) -> None:
    st.session_state.setdefault("interpreter_flash", []).append((level, text))


def _show_flashes() -> None:
    for level, text in st.session_state.pop("interpreter_flash", []):
        getattr(st, level)(text)


def _max_upload_bytes() -> int:
    return int(st.get_option("server.maxUploadSize")) * 2**20


# ---- buttons -----------------------------------------------------------------------------------

def _restart() -> None:
    try:
        get_pool().restart(_key())
        _flash("success", "The kernel was restarted: variables are cleared, files are kept.")
    except (KernelLimitError, KernelStartError) as exc:
        _flash("error", str(exc))


def _interrupt() -> None:
    sent = get_pool().interrupt(_key())
    _flash("info", "Interrupt sent to the kernel." if sent else "No kernel is running.")


def _clear() -> None:
    _history().clear()


# ---- uploads and files -------------------------------------------------------------------------

def _save_uploads(workdir: Path, uploads: list) -> None:
    """Save new uploads (by file id) into the working folder; remember refusals to show them."""
    saved: dict = st.session_state.setdefault("interpreter_saved", {})
    for upload in uploads or []:
        if upload.file_id in saved:
            continue
        try:
            info = save_upload(workdir, upload.name, upload.getvalue(), _max_upload_bytes())
        except UploadError as exc:
            saved[upload.file_id] = str(exc)
            continue
        except OSError as exc:
            saved[upload.file_id] = f"{upload.name!r} could not be saved: {exc.strerror or exc}"
            continue
        saved[upload.file_id] = info
        st.session_state.setdefault("interpreter_unannounced", []).append(info)


def _render_uploads(uploads: list) -> None:
    saved: dict = st.session_state.get("interpreter_saved", {})
    for upload in uploads or []:
        record = saved.get(upload.file_id)
        if isinstance(record, str):
            st.warning(record)
        elif isinstance(record, FileInfo):
            renamed = f" (saved as {_code(record.name)})" if record.name != upload.name else ""
            st.caption(f":material/attach_file: {_code(upload.name)}{renamed} · "
                       f"{_size(record.size)} → {_code(record.path)}")


def _code(text: object) -> str:
    """`text` as inline code in markdown (a backtick in a file name cannot break out)."""
    return "`" + str(text).replace("`", "'") + "`"


def _size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _downloader(workdir: Path, name: str):
    def data() -> bytes:
        try:
            return read_file(workdir, name, _max_upload_bytes())
        except (UploadError, OSError) as exc:
            return f"Download failed: {exc}".encode()
    return data


def _render_written_files(workdir: Path) -> None:
    """Download buttons for the files in the working folder other than unchanged uploads."""
    uploads = {info.name: info.mtime_ns for info in
               st.session_state.get("interpreter_saved", {}).values() if isinstance(info, FileInfo)}
    written = [f for f in list_files(workdir) if uploads.get(f.name) != f.mtime_ns]
    with st.expander(f"Files the code wrote ({len(written)})", icon=":material/folder_open:"):
        if not written:
            st.caption(f"Files that code saves in `{workdir}` show up here.")
        for info in written:
            st.download_button(f"{info.name} · {_size(info.size)}", _downloader(workdir, info.name),
                               file_name=Path(info.name).name, key=f"interpreter_dl_{info.name}",
                               icon=":material/download:", on_click="ignore")


# ---- drawing -----------------------------------------------------------------------------------

def _table(table: dict):
    import pandas as pd

    schema = table.get("schema", {})
    columns = [field["name"] for field in schema.get("fields", [])]
    frame = pd.DataFrame(table.get("data", []), columns=columns or None)
    keys = [k for k in schema.get("primaryKey", []) if k in frame.columns]
    return frame.set_index(keys) if keys else frame


def render_outputs(outputs: list[Output]) -> None:
    """Outputs of one run: images inline, DataFrames as tables, text as code blocks."""
    for out in outputs:
        if out.kind == "image" and out.data:
            st.image(out.data)
        elif out.table is not None:
            try:
                st.dataframe(_table(out.table))
            except (ValueError, KeyError, TypeError):
                st.code(out.text, language=None)
        elif out.kind == "error":
            st.code(out.text, language=None, wrap_lines=True)
        elif out.text:
            lines = out.text.count("\n")
            st.code(out.text, language=None, height=400 if lines > 25 else "content")


def _render_run(entry: dict) -> None:
    level, note = _STATUS_NOTES.get(entry.get("status", ""), ("", ""))
    render_outputs(entry.get("outputs", []))
    if level:
        getattr(st, level)(note)
    if entry.get("notice"):
        st.info(entry["notice"])


def _render_entry(entry: dict) -> None:
    role = entry["role"]
    if role == "observation":
        with st.chat_message("result", avatar=":material/terminal:"):
            _render_run(entry)
        return
    with st.chat_message(role):
        if entry.get("kind") == "code":
            st.caption("You ran in the kernel:")
            st.code(entry["code"], language="python")
            _render_run(entry)
            return
        if entry.get("files"):
            st.caption(":material/attach_file: " + ", ".join(_code(n) for n in entry["files"]))
        st.markdown(entry.get("text", entry.get("content")) or "*(empty reply)*")
        render_stats(entry)


def _progress(slot):
    """An on_progress callback: elapsed time and the text printed so far, redrawn now and then.

    Its Streamlit calls are also where a click on Stop ends the run (the rerun raises there).
    """
    last = [0.0]

    def show(elapsed: float, outputs: list[Output]) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_INTERVAL_S:
            return
        last[0] = now
        text = "".join(o.text for o in outputs if o.kind in ("stdout", "stderr"))[-3000:]
        with slot.container():
            st.caption(f"Running… {elapsed:.0f} s")
            if text:
                st.code(text, language=None)
    return show


# ---- running -----------------------------------------------------------------------------------

def _run_user_code(code: str, history: list[dict], timeout: float, live) -> None:
    """Run code the user typed; it goes into the history (the model sees it and its output)."""
    entry: dict = {"role": "user", "kind": "code", "code": code, "status": "running",
                   "outputs": [], "content": ""}
    history.append(entry)
    with live, st.chat_message("user"):
        st.caption("You ran in the kernel:")
        st.code(code, language="python")
        slot = st.empty()
        try:
            with get_pool().session(_key()) as kernel:
                result = kernel.execute(code, timeout=timeout, on_progress=_progress(slot))
        except BaseException as exc:
            entry.update(status="stopped", content=(
                f"I ran this code:\n```python\n{code}\n```\nIt was stopped before it finished."))
            if isinstance(exc, _EXPECTED_ERRORS):
                history.remove(entry)
                _flash("error", str(exc))
                return
            raise
        observation = format_observation(result)
        entry.update(status=result.status, outputs=result.outputs,
                     content=f"I ran this code:\n```python\n{code}\n```\nResult:\n{observation}")


def _run_model(history: list[dict], settings: SamplingSettings, system: str, timeout: float,
               max_rounds: int, live) -> None:
    """The model/code/result loop for the newest user message, drawn as it goes."""
    engine = get_engine()
    loop_settings = LoopSettings(max_rounds=max_rounds, timeout_s=timeout,
                                 observation_role=observation_role(engine.loaded.tokenizer))
    with live:
        waiting = st.empty()
        on_wait = wait_notice(waiting, "Waiting for another session's generation to finish")
        drawer = _StepDrawer(waiting)
        with get_pool().session(_key()) as kernel:
            steps = run_rounds(EngineTurn(engine, settings, on_wait=on_wait), kernel, history,
                               system, loop_settings, on_progress=drawer.progress)
            try:
                for step in steps:
                    drawer.draw(step)
            finally:
                steps.close()  # now, not at garbage collection: the model's slot is freed


class _StepDrawer:
    """Draws the loop's steps: one chat message per history entry, redrawn as it changes."""

    def __init__(self, waiting) -> None:
        self.waiting = waiting
        self.slots: dict[int, object] = {}
        self.running = None  # the on_progress drawer of the cell that runs now
        self.redraw = StreamRedraw()

    def progress(self, elapsed: float, outputs: list[Output]) -> None:
        if self.running is not None:
            self.running(elapsed, outputs)

    def draw(self, step: Step) -> None:
        self.waiting.empty()
        entry = step.entry
        if id(entry) not in self.slots:
            observation = entry["role"] == "observation"
            self.slots[id(entry)] = st.chat_message(
                "result" if observation else "assistant",
                avatar=":material/terminal:" if observation else None).empty()
        slot = self.slots[id(entry)]
        if step.kind == "delta":
            self.redraw(slot, entry["content"])
        elif step.kind == "reply":
            with slot.container():
                render_message(entry)
        elif step.kind == "run":
            self.running = _progress(slot)
        elif step.kind == "result":
            self.running = None
            with slot.container():
                _render_run(entry)


def _user_entry(prompt: str) -> dict:
    """A chat message, told about the uploads saved since the last one."""
    files: list[FileInfo] = st.session_state.pop("interpreter_unannounced", [])
    return {"role": "user", "content": upload_prefix(files) + prompt, "text": prompt,
            "files": [info.name for info in files]}


def _persistent_number(label: str, key: str, default: float, low: float, high: float,
                       help: str) -> float:
    return st.sidebar.number_input(label, low, high, value=default, step=type(default)(1),
                                   key=key, help=help, persist_state="session")


def render_interpreter_mode(settings: SamplingSettings, system_prompt_extra: str,
                            model_ready: bool) -> None:
    """The whole mode: controls, uploads, history, files, code box, chat input, the loop."""
    timeout = _persistent_number("Cell timeout (s)", "interpreter_timeout", DEFAULT_TIMEOUT_S,
                                 1.0, 3600.0, "A cell running longer is interrupted.")
    max_rounds = int(_persistent_number(
        "Max rounds", "interpreter_rounds", DEFAULT_MAX_ROUNDS, 1, 20,
        "Model turns per message: each may run code and read its result."))
    pool, key, history = get_pool(), _key(), _history()
    notice = pool.reaped_notice(key)
    if notice:
        st.session_state.pop("interpreter_saved", None)  # the uploader's files are saved again
        st.session_state.pop("interpreter_unannounced", None)
        _flash("info", notice)
    workdir = pool.workdir(key)

    cols = st.columns(4)
    cols[0].button("Restart kernel", icon=":material/restart_alt:", on_click=_restart,
                   key="interpreter_restart", width="stretch")
    cols[1].button("Interrupt", icon=":material/pause_circle:", on_click=_interrupt,
                   key="interpreter_interrupt", width="stretch")
    cols[2].button("Clear chat", icon=":material/delete:", on_click=_clear,
                   key="interpreter_clear", width="stretch", disabled=not history)
    with cols[3]:
        export = [{k: e[k] for k in ("role", "content", "code", "status") if e.get(k)}
                  for e in history]
        render_export(export, {"mode": MODE, "settings": settings.to_dict()}, key=MODE)
    _show_flashes()

    uploads = st.file_uploader(
        "Files for the code (csv, json, jsonl, xlsx, txt, …)", accept_multiple_files=True,
        key="interpreter_files",
        help=f"Saved in the kernel's working folder `{workdir}`; the model is told about them "
             "with your next message.")
    _save_uploads(workdir, uploads)
    _render_uploads(uploads)

    for entry in history:
        _render_entry(entry)
    live = st.container()
    _render_written_files(workdir)
    code = st.text_area(
        "Python code", key="interpreter_code", height=110, persist_state="session",
        placeholder="import pandas as pd\ndf = pd.read_csv('data.csv')\ndf",
        help="Run code yourself in this session's kernel; the model sees it and its output.")
    run_clicked = st.button("Run code", icon=":material/play_arrow:", key="interpreter_run")

    take_user_message(history, "Ask about your files, or ask for an analysis",
                      key="interpreter_input", pending_key="interpreter_pending",
                      disabled=not model_ready, make_entry=_user_entry, render=_render_entry,
                      container=live)

    busy = (run_clicked and code.strip()) or st.session_state.get("interpreter_pending")
    if not busy:
        if run_clicked:
            st.warning("The code box is empty: type some Python first.")
        return
    with live:
        st.button("Stop", icon=":material/stop_circle:", key="interpreter_stop",
                  help="Stop the model and interrupt the running cell.")
    try:
        if run_clicked:
            _run_user_code(code, history, timeout, live)
        elif st.session_state.pop("interpreter_pending", False) and model_ready:
            _run_model(history, settings, system_prompt(workdir, system_prompt_extra), timeout,
                       max_rounds, live)
    except _EXPECTED_ERRORS as exc:
        _flash("error", str(exc))
    except Exception as exc:
        log.exception("code interpreter run failed")
        _flash("error", f"The run failed: {type(exc).__name__}: {exc}")
    st.rerun()
