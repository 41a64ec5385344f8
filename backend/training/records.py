"""Reading a data file (.json list or .jsonl) into records that remember where they came from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.training.errors import DataError


@dataclass(frozen=True)
class Record:
    """One JSON record: its 1-based number in the file and, for JSON Lines, its line number."""

    number: int
    line: int | None
    data: Any

    def where(self, path: Path) -> str:
        line = f", line {self.line}" if self.line is not None else ""
        return f"{path.name}: record {self.number}{line}"


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path.name}: line {line} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}). Save the file as UTF-8."
        ) from exc


def _json_list(path: Path, text: str) -> list[Record]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path.name}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc
    if not isinstance(data, list):
        raise DataError(f"{path.name}: expected a JSON list of records, got {type(data).__name__}")
    return [Record(i, None, item) for i, item in enumerate(data, start=1)]


def _json_lines(path: Path, text: str) -> list[Record]:
    records: list[Record] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path.name}: record {len(records) + 1}, line {line_no}: malformed JSON at "
                f"column {exc.colno}: {exc.msg}"
            ) from exc
        records.append(Record(len(records) + 1, line_no, item))
    return records


def read_records(path: str | Path) -> list[Record]:
    """All records of a .json (a list) or .jsonl file; DataError names the file and the line."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"Data file not found: {path}")
    if not path.is_file():
        raise DataError(f"Not a file: {path}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}") from exc
    text = _decode(path, raw)
    stripped = text.strip()
    if not stripped:
        raise DataError(f"{path.name} is empty: it holds no records.")
    # A .json file may hold JSON Lines too (AdvertiseGen's train.json does): look at the content.
    records = _json_list(path, text) if stripped.startswith("[") else _json_lines(path, text)
    if not records:
        raise DataError(f"{path.name} is an empty list: it holds no records.")
    return records
