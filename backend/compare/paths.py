"""Paths typed by the user, turned into `Path`s with a message instead of an exception."""

from __future__ import annotations

from pathlib import Path

from backend.compare.errors import CompareError


def user_path(text: str, what: str = "path") -> Path:
    """`~` expanded; CompareError for text that cannot be a path (empty, NUL, unknown user)."""
    text = str(text).strip()
    if not text:
        raise CompareError(f"Enter the {what}.")
    if "\x00" in text:
        raise CompareError(f"Not a valid {what}: it contains a NUL character.")
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # ~user that does not exist
        raise CompareError(f"Not a valid {what} ({text}): {exc}") from None


def kind_of(path: Path) -> str:
    """'dir', 'file', 'missing' or 'other'; CompareError when the path cannot be looked at."""
    try:
        if path.is_dir():
            return "dir"
        if path.is_file():
            return "file"
        return "other" if path.exists() else "missing"
    except OSError as exc:
        raise CompareError(f"Cannot open {path}: {exc.strerror or exc}") from None


def resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:
        raise CompareError(f"Cannot resolve {path}: {exc}") from None
