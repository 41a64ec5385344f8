"""A validation file in any training format as (prompt, reference) samples.

Records are read and converted by the training package's converters; a sample's reference is
the conversation's last assistant turn and its prompt every turn before that.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from backend.compare.errors import CompareError
from backend.compare.paths import kind_of, user_path
from backend.training.data import convert_records
from backend.training.errors import DataError
from backend.training.formats import Turn
from backend.training.records import read_records

MAX_LISTED = 5


@dataclass(frozen=True)
class Sample:
    """One validation record: the turns up to and including the reference answer."""

    number: int  # the record's number in the file (1-based)
    where: str
    turns: tuple[Turn, ...]  # the prompt turns, then the reference (an assistant turn)

    @property
    def prompt_turns(self) -> tuple[Turn, ...]:
        return self.turns[:-1]

    @property
    def reference(self) -> str:
        return self.turns[-1].content

    @property
    def prompt_text(self) -> str:
        """The last user (or observation) turn: what the table shows as the prompt."""
        return next((t.content for t in reversed(self.prompt_turns) if t.role != "system"), "")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sample(conversation_turns: tuple[Turn, ...], number: int, where: str) -> Sample:
    last = max(i for i, t in enumerate(conversation_turns) if t.role == "assistant")
    return Sample(number, where, conversation_turns[: last + 1])


def load_samples(path: str | Path, limit: int | None = None) -> tuple[list[Sample], str]:
    """The file's samples (the first `limit`) and its SHA-256; CompareError for bad data.

    A file is parsed once per version (path, mtime, size): the page asks on every rerun.
    """
    if not str(path).strip():
        raise CompareError("Enter the path of a validation file (.json or .jsonl).")
    path = user_path(str(path), "validation file path")
    version = (0, -1)
    if kind_of(path) == "file":
        try:
            stat = path.stat()
        except OSError as exc:
            raise CompareError(f"Cannot read {path}: {exc.strerror or exc}") from None
        version = (stat.st_mtime_ns, stat.st_size)
    samples, digest = _parsed(str(path), *version)
    return list(samples if limit is None else samples[: max(1, limit)]), digest


@functools.lru_cache(maxsize=8)
def _parsed(text: str, _mtime_ns: int, _size: int) -> tuple[tuple[Sample, ...], str]:
    path = Path(text)
    try:
        records = read_records(path)
        digest = file_sha256(path)
    except DataError as exc:
        raise CompareError(str(exc)) from None
    except OSError as exc:
        raise CompareError(f"Cannot read {path}: {exc.strerror or exc}") from None
    conversations, problems = convert_records(records, path)
    if problems:
        more = len(problems) - MAX_LISTED
        listed = problems[:MAX_LISTED] + ([f"... and {more} more"] if more > 0 else [])
        raise CompareError(f"{path.name}: {len(problems)} record(s) cannot be used:\n"
                           + "\n".join(f"- {p}" for p in listed))
    return tuple(_sample(c.turns, c.record.number, c.record.where(path))
                 for c in conversations), digest
