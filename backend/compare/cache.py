"""Evaluation results on disk, one file per (variant version, data file, settings), so that
reopening the page shows them without recomputing; plus the inputs of the last evaluation.

The folder is $WORKBENCH_COMPARE_CACHE, else `compare/` in the workbench's cache folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from backend import default_model
from backend.json_files import read_json, write_atomic, write_json

LAST_FILE = "last.json"
UPLOADS = "uploads"
# The files of a model folder whose mtimes make its stamp: config and weights.
STAMP_NAMES = ("config.json",)
STAMP_SUFFIXES = (".safetensors", ".bin")


def cache_dir() -> Path:
    root = os.environ.get("WORKBENCH_COMPARE_CACHE")
    return Path(root).expanduser() if root else default_model.cache_root() / "compare"


def entry_key(parts: dict[str, Any]) -> str:
    """A stable key for a JSON-able description of what was computed."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def folder_stamp(folder: Path) -> int:
    """Newest mtime (ns) of a model folder's config and weight files (0 when none is there)."""
    stamps = []
    try:
        for entry in folder.iterdir():
            if entry.name in STAMP_NAMES or entry.suffix in STAMP_SUFFIXES:
                stamps.append(entry.stat().st_mtime_ns)
    except OSError:
        return 0
    return max(stamps, default=0)


class ResultCache:
    """Reads and writes result files under one folder (writes are atomic)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()

    def get(self, key: str) -> dict[str, Any] | None:
        return read_json(self.root / f"{key}.json")

    def put(self, key: str, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.root / f"{key}.json", data)

    def remember_last(self, inputs: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.root / LAST_FILE, inputs)

    def last(self) -> dict[str, Any] | None:
        return read_json(self.root / LAST_FILE)

    def save_upload(self, name: str, data: bytes) -> Path:
        """Keep an uploaded validation file (named by its content) so it can be reopened."""
        digest = hashlib.sha256(data).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name)[-80:]
        path = self.root / UPLOADS / f"{digest}-{safe or 'data.jsonl'}"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
        return path
