"""Incremental detokenization: text deltas per token without re-decoding the whole reply."""

from __future__ import annotations

from typing import Any

_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Decodes a growing list of token ids into text deltas.

    Each step decodes only a short window (the tokens since the last emitted text, plus the
    one before them for context), so the cost per token stays flat. A delta is held back while
    it ends in an incomplete UTF-8 sequence, so multi-byte characters (Chinese, emoji) that span
    several byte-level tokens come out whole.
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        """Add one token; return the new text it completes (possibly empty)."""
        self.ids.append(token_id)
        prefix_text = self._decode(self.ids[self._prefix:self._read])
        new_text = self._decode(self.ids[self._prefix:])
        if len(new_text) > len(prefix_text) and not new_text.endswith(_REPLACEMENT):
            self._prefix, self._read = self._read, len(self.ids)
            return new_text[len(prefix_text):]
        return ""

    def flush(self) -> str:
        """Text still held back at the end.

        A reply cut off by the token limit can end inside a multi-byte character; those
        incomplete bytes are dropped rather than shown as U+FFFD.
        """
        prefix_text = self._decode(self.ids[self._prefix:self._read])
        new_text = self._decode(self.ids[self._prefix:])
        self._prefix = self._read = len(self.ids)
        return new_text[len(prefix_text):].rstrip(_REPLACEMENT)
