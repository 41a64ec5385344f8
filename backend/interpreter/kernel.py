"""One Jupyter kernel in a working folder: run code, collect every output in order, survive hangs
and crashes.

The kernel is `sys.executable -m ipykernel_launcher`, the app's own Python, so no kernelspec has
to be installed or found. Its stdout/stderr go to a log file (or nowhere), never to a pipe.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

log = logging.getLogger(__name__)

TABLE_MIME = "application/vnd.dataresource+json"
TABLE_ROWS = 200
DEFAULT_TIMEOUT_S = 60.0
MAX_OUTPUT_CHARS = 100_000
MAX_IMAGES = 20
POLL_S = 0.1
INTERRUPT_GRACE_S = 5.0
START_TIMEOUT_S = 60.0
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
_TAGS = re.compile(r"<[^>]*>")
_ENV_KEEP = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
             "VIRTUAL_ENV", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR")
_STARTUP = Path(__file__).with_name("kernel_startup.py")

Progress = Callable[[float, list["Output"]], None]


class KernelStartError(RuntimeError):
    """The kernel process could not be started or did not answer."""


@dataclass
class Output:
    """One piece of output: `kind` is stdout, stderr, result, image or error.

    Images carry PNG bytes in `data` (and their text/plain alternative in `text`); DataFrame
    results also carry `table`, the pandas table-schema JSON of their first rows.
    """

    kind: str
    text: str = ""
    data: bytes | None = None
    table: dict | None = None


@dataclass
class ExecutionResult:
    """What one cell did: `status` (ok, error, timeout, died) and `outputs` in the order made."""

    status: str
    outputs: list[Output] = field(default_factory=list)
    truncated: bool = False
    elapsed_s: float = 0.0


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def kernel_env() -> dict[str, str]:
    """The kernel's environment: the basics only (no tokens or secrets of the app), inline plots."""
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith("LC_")}
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def default_memory_limit_mb() -> int:
    """Half the machine's memory, at least 4 GiB: a runaway cell gets MemoryError, not the app."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        total = 0
    return max(4096, total // 2)


class _OwnPython(KernelSpecManager):
    """Every kernel name resolves to this Python's ipykernel: "No such kernel" cannot happen."""

    def get_kernel_spec(self, kernel_name: str, *args: Any, **kwargs: Any) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python (workbench)", language="python", interrupt_mode="signal",
        )


class _Collector:
    """Turns the iopub messages of one execution into Outputs, within the size caps."""

    def __init__(self, max_chars: int, max_images: int) -> None:
        self.outputs: list[Output] = []
        self.max_chars = max_chars
        self.max_images = max_images
        self.chars = 0
        self.images = 0
        self.text_cut = False
        self.images_cut = False
        self.skip_interrupt_error = False

    def add_text(self, kind: str, text: str, table: dict | None = None) -> None:
        room = self.max_chars - self.chars
        if len(text) > room:
            self.text_cut = True
            text = text[:max(room, 0)]
            if not text:
                return
        self.chars += len(text)
        last = self.outputs[-1] if self.outputs else None
        if kind in ("stdout", "stderr") and last is not None and last.kind == kind:
            last.text += text
        else:
            self.outputs.append(Output(kind, text=text, table=table))

    def add_data(self, data: dict) -> None:
        png = data.get("image/png")
        plain = data.get("text/plain") or _TAGS.sub("", data.get("text/html", ""))
        if png:
            if self.images >= self.max_images:
                self.images_cut = True
                return
            self.images += 1
            self.outputs.append(Output("image", text=plain, data=base64.b64decode(png)))
        elif plain:
            table = data.get(TABLE_MIME)
            self.add_text("result", plain, table if isinstance(table, dict) else None)

    def handle(self, msg: dict) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            self.add_text("stderr" if content.get("name") == "stderr" else "stdout",
                          content.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            self.add_data(content.get("data", {}))
        elif kind == "error":
            if self.skip_interrupt_error and content.get("ename") == "KeyboardInterrupt":
                return
            trace = "\n".join(content.get("traceback") or [])
            text = strip_ansi(trace) or f"{content.get('ename')}: {content.get('evalue')}"
            self.add_text("error", text)
        elif kind == "clear_output":
            self.outputs.clear()

    @property
    def truncated(self) -> bool:
        return self.text_cut or self.images_cut

    def finish(self, note: str | None = None) -> list[Output]:
        if self.text_cut:
            self.outputs.append(Output("stderr", text=(
                f"[output truncated: only the first {self.max_chars:,} characters are kept]")))
        if self.images_cut:
            self.outputs.append(Output("stderr", text=(
                f"[only the first {self.max_images} images are kept]")))
        if note:
            self.outputs.append(Output("error", text=note))
        return self.outputs


class KernelSession:
    """A Python kernel whose working directory is `workdir`; use it as a context manager.

    Thread-safe: one execution at a time; `interrupt()` may be called from any thread.
    """

    def __init__(
        self, workdir: str | Path, log_path: str | Path | None = None,
        max_output_chars: int = MAX_OUTPUT_CHARS, max_images: int = MAX_IMAGES,
        memory_limit_mb: int | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.log_path = Path(log_path) if log_path else None
        self.max_output_chars = max_output_chars
        self.max_images = max_images
        self.memory_limit_mb = default_memory_limit_mb() if memory_limit_mb is None \
            else memory_limit_mb
        self._lock = threading.RLock()
        self._km: KernelManager | None = None
        self._kc: Any = None

    def __enter__(self) -> KernelSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def alive(self) -> bool:
        km = self._km
        return km is not None and km.is_alive()

    @property
    def pid(self) -> int | None:
        km = self._km
        return getattr(km.provisioner, "pid", None) if km and km.provisioner else None

    def start(self) -> None:
        """Start the kernel (a no-op when it runs). Raises KernelStartError."""
        with self._lock:
            if self._km is not None:
                return
            self.workdir.mkdir(parents=True, exist_ok=True)
            km = KernelManager(kernel_spec_manager=_OwnPython(), kernel_name="workbench-python")
            try:
                sink = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
                try:
                    km.start_kernel(cwd=str(self.workdir), env=kernel_env(),
                                    stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
                finally:
                    if sink is not subprocess.DEVNULL:
                        sink.close()
                self._km = km
                self._limit_memory()
                self._kc = km.client()
                self._kc.start_channels()
                self._kc.wait_for_ready(timeout=START_TIMEOUT_S)
                self._run_startup()
            except Exception as exc:
                log.exception("kernel start failed")
                self._stop()
                raise KernelStartError(f"The Python kernel did not start: {exc}") from exc

    def _limit_memory(self) -> None:
        pid = self.pid
        if pid and self.memory_limit_mb > 0:
            limit = self.memory_limit_mb * 2**20
            try:
                resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
            except (OSError, ValueError):
                log.warning("could not set the kernel's memory limit")

    def _run_startup(self) -> None:
        code = (f"{_STARTUP.read_text()}\n_workbench_setup({self.max_output_chars + 1}, "
                f"{TABLE_MIME!r}, {TABLE_ROWS})\ndel _workbench_setup\n")
        msg_id = self._kc.execute(code, silent=True, store_history=False)
        reply = self._shell_reply(msg_id, START_TIMEOUT_S)
        if reply is None or reply["content"].get("status") != "ok":
            detail = reply["content"].get("evalue") if reply else "no answer"
            raise KernelStartError(f"kernel setup failed: {detail}")

    def _stop(self) -> None:
        kc, km = self._kc, self._km
        self._kc = self._km = None
        if kc is not None:
            kc.stop_channels()
        if km is not None:
            try:
                km.shutdown_kernel(now=True)
            except Exception:  # a kernel that is already gone is fine
                log.debug("kernel shutdown", exc_info=True)

    def shutdown(self) -> None:
        """Stop the kernel; `execute` starts a new one if called again."""
        with self._lock:
            self._stop()

    def restart(self) -> None:
        """A fresh kernel in the same folder: variables and imports are gone, files stay."""
        with self._lock:
            self._stop()
            self.start()

    def interrupt(self) -> bool:
        """Send the kernel an interrupt (KeyboardInterrupt in the running cell). Any thread."""
        km = self._km
        if km is None or not km.is_alive():
            return False
        km.interrupt_kernel()
        return True

    def _drain_iopub(self) -> None:
        for _ in range(10_000):
            try:
                self._kc.get_iopub_msg(timeout=0)
            except Empty:
                return

    def _shell_reply(self, msg_id: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply = self._kc.get_shell_msg(timeout=left)
            except Empty:
                return None
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply
        return None

    def _wait_idle(self, msg_id: str, collector: _Collector, timeout: float) -> bool:
        """Collect `msg_id`'s output until the kernel reports idle for it; False on timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self._kc.get_iopub_msg(timeout=min(left, POLL_S))
            except Empty:
                if not self.alive:
                    return False
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return True
            collector.handle(msg)
        return False

    def _settle(self, msg_id: str, collector: _Collector) -> bool:
        """Interrupt the running cell and wait for it to end; restart the kernel if it will not."""
        collector.skip_interrupt_error = True
        self.interrupt()
        if self._wait_idle(msg_id, collector, INTERRUPT_GRACE_S):
            self._shell_reply(msg_id, 1.0)
            return True
        log.warning("the kernel ignored an interrupt; restarting it")
        self.restart()
        return False

    def _death_note(self) -> str:
        process = getattr(self._km.provisioner, "process", None) if self._km else None
        code = process.poll() if process is not None else None
        how = f"exit code {code}" if code is not None and code >= 0 else "killed"
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        return (f"The kernel died ({how}) and was restarted: variables and imports are lost; "
                "files in the working folder are kept.")

    def execute(
        self, code: str, timeout: float = DEFAULT_TIMEOUT_S, on_progress: Progress | None = None,
    ) -> ExecutionResult:
        """Run `code` and collect its outputs until the kernel is idle again.

        After `timeout` seconds the cell is interrupted (status "timeout", the kernel keeps its
        variables). A kernel that dies is restarted (status "died"). `on_progress(elapsed,
        outputs)` is called about every 0.1 s; if it raises, the cell is interrupted and the
        exception propagates (that is how the page's Stop button ends a run).
        """
        with self._lock:
            self.start()
            started = time.monotonic()
            self._drain_iopub()
            msg_id = self._kc.execute(code, store_history=True, allow_stdin=False)
            collector = _Collector(self.max_output_chars, self.max_images)
            status, note, last_progress = "", None, started
            try:
                while not status:
                    now = time.monotonic()
                    if now - started >= timeout:
                        status = "timeout"
                        break
                    if on_progress is not None and now - last_progress >= POLL_S:
                        last_progress = now
                        on_progress(now - started, collector.outputs)
                    try:
                        msg = self._kc.get_iopub_msg(
                            timeout=min(POLL_S, timeout - (now - started)))
                    except Empty:
                        if not self._km.is_alive():
                            status = "died"
                        continue
                    if msg["parent_header"].get("msg_id") != msg_id:
                        continue
                    if msg["msg_type"] == "status" and \
                            msg["content"]["execution_state"] == "idle":
                        reply = self._shell_reply(msg_id, 5.0)
                        failed = reply is not None and reply["content"].get("status") != "ok"
                        status = "error" if failed or any(
                            o.kind == "error" for o in collector.outputs) else "ok"
                        break
                    collector.handle(msg)
            except BaseException:
                self._settle(msg_id, collector)
                raise
            if status == "timeout":
                kept = self._settle(msg_id, collector)
                note = (f"Timed out after {timeout:g} s: the cell was interrupted. " + (
                    "The kernel keeps the variables defined so far." if kept else
                    "The kernel did not stop and was restarted: variables are lost."))
            elif status == "died":
                note = self._death_note()
                self.restart()
            outputs = collector.finish(note)
            return ExecutionResult(status, outputs, collector.truncated,
                                   time.monotonic() - started)
