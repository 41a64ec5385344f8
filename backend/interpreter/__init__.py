"""Code Interpreter backend: per-session Jupyter kernels, uploads, the model/code/result loop."""

from backend.interpreter.files import (
    FileInfo,
    UploadError,
    list_files,
    read_file,
    sanitize_filename,
    save_upload,
    upload_prefix,
)
from backend.interpreter.kernel import (
    ExecutionResult,
    KernelSession,
    KernelStartError,
    Output,
)
from backend.interpreter.loop import EngineTurn, LoopSettings, Step, observation_entry, run_rounds
from backend.interpreter.pool import KernelLimitError, KernelPool
from backend.interpreter.protocol import (
    CodeBlock,
    extract_code,
    format_observation,
    observation_role,
    prompt_messages,
    system_prompt,
)

__all__ = [
    "CodeBlock", "EngineTurn", "ExecutionResult", "FileInfo", "KernelLimitError", "KernelPool",
    "KernelSession", "KernelStartError", "LoopSettings", "Output", "Step", "UploadError",
    "extract_code", "format_observation", "list_files", "observation_entry", "observation_role",
    "prompt_messages", "read_file", "run_rounds", "sanitize_filename", "save_upload",
    "system_prompt", "upload_prefix",
]
