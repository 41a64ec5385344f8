"""The training package's user-facing errors: the message is shown as it stands."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A problem the user can fix (bad data, bad path, bad setting); never a traceback."""


class DataError(TrainingError):
    """A data file cannot be used; the message names the file, the record (and line) and why."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]
