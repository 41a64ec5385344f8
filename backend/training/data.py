"""A data file, checked and tokenized: records → conversations → token ids with loss labels.

Every problem is collected with the file, record number (and line) it belongs to; records longer
than the maximum length are handled by an explicit policy and counted:

- ``error`` (default): a too-long record is a problem, like malformed JSON;
- ``truncate``: cut to the maximum length (a record left with no trained token is dropped);
- ``drop``: left out.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.training.encoding import ChatEncoder, Encoded, TemplateRejected
from backend.training.errors import DataError
from backend.training.formats import Conversation, to_conversation
from backend.training.records import read_records

LONG_POLICIES = ("error", "truncate", "drop")
MAX_LISTED = 20


@dataclass
class DataReport:
    """What a check of one data file found."""

    path: str
    records: int = 0
    formats: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    notes: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # tokens per kept example (after truncation)
    trained_tokens: int = 0
    truncated: int = 0
    dropped: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add_problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(text)

    def error(self) -> DataError:
        more = self.problem_count - len(self.problems)
        lines = self.problems + ([f"... and {more} more problem(s)"] if more > 0 else [])
        head = f"{Path(self.path).name}: {self.problem_count} problem(s):" \
            if self.problem_count > 1 else ""
        return DataError("\n".join([head, *lines]).strip(), self.problems)

    def summary(self) -> str:
        """One line for logs and the page."""
        kinds = ", ".join(f"{n} {k}" for k, n in self.formats.most_common())
        parts = [f"{Path(self.path).name}: {self.records} record(s) ({kinds or 'none'})"]
        if self.lengths:
            parts.append(f"{len(self.lengths)} example(s), tokens min {min(self.lengths)} / "
                         f"mean {statistics.fmean(self.lengths):.0f} / max {max(self.lengths)}, "
                         f"{self.trained_tokens} trained tokens")
        if self.truncated:
            parts.append(f"{self.truncated} truncated")
        if self.dropped:
            parts.append(f"{self.dropped} dropped")
        if self.problem_count:
            parts.append(f"{self.problem_count} problem(s)")
        return "; ".join(parts)


@dataclass
class PreparedData:
    """Examples ready for a collator, the conversations they came from, and the report."""

    examples: list[Encoded]
    conversations: list[Conversation]
    report: DataReport


def convert_records(records: list, path: Path) -> tuple[list[Conversation], list[str]]:
    """Every record as a conversation, and the problems of those that cannot be one."""
    conversations, problems = [], []
    for record in records:
        try:
            conversations.append(to_conversation(record, path))
        except DataError as exc:
            problems.append(str(exc))
    return conversations, problems


def read_conversations(path: str | Path, report: DataReport) -> list[Conversation]:
    """Convert every record; problems go into `report` (file-level ones end the reading)."""
    path = Path(path).expanduser()
    try:
        records = read_records(path)
    except DataError as exc:
        report.add_problem(str(exc))
        return []
    report.records = len(records)
    conversations, problems = convert_records(records, path)
    for problem in problems:
        report.add_problem(problem)
    for conv in conversations:
        report.formats[conv.format] += 1
    return conversations


def _encode_all(
    conversations: list[Conversation], encoder: ChatEncoder, max_length: int, long_records: str,
    report: DataReport, path: Path,
) -> tuple[list[Encoded], list[Conversation]]:
    examples, kept = [], []
    for conv in conversations:
        where = conv.record.where(path)
        try:
            enc = encoder.encode(conv.turns, max_length)
        except TemplateRejected as exc:
            report.add_problem(f"{where}: {exc}")
            continue
        if enc.truncated:
            if long_records == "error":
                report.add_problem(
                    f"{where}: {enc.full_length} tokens, longer than the maximum length "
                    f"{max_length}. Raise the maximum length, or choose to truncate or drop "
                    "long records."
                )
                continue
            if long_records == "drop" or enc.trained_tokens == 0:
                report.dropped += 1
                why = "no trained token left after truncation" if long_records != "drop" else \
                    "longer than the maximum length"
                report.notes.append(f"{where}: dropped ({enc.full_length} tokens, {why})")
                continue
            report.truncated += 1
        examples.append(enc)
        kept.append(conv)
        report.lengths.append(len(enc.input_ids))
        report.trained_tokens += enc.trained_tokens
    return examples, kept


def check_data(
    path: str | Path, tokenizer: Any, max_length: int, long_records: str = "error",
) -> PreparedData:
    """Read, convert and tokenize a file; never raises for bad data (see `report.ok`)."""
    if long_records not in LONG_POLICIES:
        raise ValueError(f"long_records must be one of {LONG_POLICIES}")
    path = Path(path).expanduser()
    report = DataReport(str(path))
    conversations = read_conversations(path, report)
    if not conversations:
        if report.ok:
            report.add_problem(f"{path.name}: no usable record.")
        return PreparedData([], [], report)
    examples, kept = _encode_all(
        conversations, ChatEncoder(tokenizer), max_length, long_records, report, path
    )
    if report.ok and not examples:
        report.add_problem(f"{path.name}: every record was dropped; no example is left to train.")
    return PreparedData(examples, kept, report)


def load_data(
    path: str | Path, tokenizer: Any, max_length: int, long_records: str = "error",
) -> PreparedData:
    """Like `check_data`, but a file with any problem raises DataError listing them."""
    prepared = check_data(path, tokenizer, max_length, long_records)
    if not prepared.report.ok:
        raise prepared.report.error()
    return prepared
