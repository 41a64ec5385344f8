"""The comparison's user-facing error: the message is shown as it stands."""

from __future__ import annotations


class CompareError(RuntimeError):
    """A problem the user can fix (bad folder, wrong base model, bad data); never a traceback."""
