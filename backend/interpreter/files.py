"""The session's working folder: uploads with safe names, the files code wrote, ChatGLM3's
`#File:` upload lines.

Nothing here writes or reads outside the folder: names are reduced to one plain path component,
and symbolic links (which code in the kernel could plant) are never followed.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_UPLOAD_BYTES = 200 * 2**20
MAX_NAME_BYTES = 200
MAX_LISTED_FILES = 200
_FORBIDDEN = re.compile(r'[<>:"|?*]')
_SKIPPED_DIRS = {"__pycache__", ".ipynb_checkpoints"}


class UploadError(ValueError):
    """An upload that was refused; the message says why."""


@dataclass(frozen=True)
class FileInfo:
    """A file in the working folder: `name` relative to it (posix), size, modification time."""

    name: str
    path: Path
    size: int
    mtime_ns: int


def sanitize_filename(name: str) -> str:
    """A safe single file name: unicode and spaces kept; no folders, no leading dots, no control
    characters; at most MAX_NAME_BYTES bytes (the extension is kept)."""
    name = unicodedata.normalize("NFC", name or "").replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _FORBIDDEN.sub("_", name).strip().lstrip(".").strip()
    if not name:
        return "upload"
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 20:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    if len((stem + suffix).encode()) > MAX_NAME_BYTES:
        while len((stem + suffix).encode()) > MAX_NAME_BYTES:
            stem = stem[:-1]
        stem = stem.rstrip()
    return (stem or "upload") + suffix


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, checked to be a direct child of `folder` (raises UploadError if not)."""
    folder = folder.resolve()
    target = folder / name
    if target.parent.resolve() != folder or name in ("", ".", ".."):
        raise UploadError(f"{name!r} is not a plain file name.")
    return target


def save_upload(
    folder: Path, name: str, data: bytes, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> FileInfo:
    """Write an uploaded file into `folder` under its sanitized name (replacing a file or link of
    that name; never writing through a link). Empty and too large uploads raise UploadError."""
    if not data:
        raise UploadError(f"{name!r} is empty (0 bytes): nothing was saved.")
    if len(data) > max_bytes:
        raise UploadError(f"{name!r} is {len(data) / 2**20:.1f} MB; the limit is "
                          f"{max_bytes / 2**20:.0f} MB.")
    folder.mkdir(parents=True, exist_ok=True)
    target = inside(folder, sanitize_filename(name))
    if target.is_dir() and not target.is_symlink():
        raise UploadError(f"{target.name!r} is a folder in the working directory.")
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, target)  # replaces a planted symlink itself, not what it points to
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    stat = target.stat(follow_symlinks=False)
    return FileInfo(target.name, target, stat.st_size, stat.st_mtime_ns)


def list_files(folder: Path, limit: int = MAX_LISTED_FILES) -> list[FileInfo]:
    """Regular files under `folder` (hidden entries, caches and links skipped), sorted by name."""
    found: list[FileInfo] = []
    pending = [folder]
    while pending and len(found) < limit:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in _SKIPPED_DIRS:
                    pending.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False) and len(found) < limit:
                stat = entry.stat(follow_symlinks=False)
                rel = Path(entry.path).relative_to(folder).as_posix()
                found.append(FileInfo(rel, Path(entry.path), stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda info: info.name)


def read_file(folder: Path, name: str, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of the regular file `name` inside `folder` (links and escapes refused)."""
    base = folder.resolve()
    path = base / name
    if path.is_symlink() or not path.resolve().is_relative_to(base) or not path.is_file():
        raise UploadError(f"{name!r} is not a file of the working folder.")
    if path.stat().st_size > max_bytes:
        raise UploadError(f"{name!r} is larger than {max_bytes / 2**20:.0f} MB.")
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle:
        return handle.read(max_bytes)


def upload_prefix(files: list[FileInfo]) -> str:
    """ChatGLM3's announcement of uploaded files, three lines per file, for the user turn."""
    return "".join(f"#File: {info.path}\n#Size: {info.size}\n#File uploaded\n" for info in files)
