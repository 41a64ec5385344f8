"""Turning a conversation into token ids and labels with the model's own chat template.

The text is what the chat template renders for the whole conversation, exactly as at inference.
Which characters are trained is found by rendering growing prefixes of the conversation: an
assistant turn's trained span runs from the end of the rendered generation prompt (so the role
header is not trained) to the end of the turn (so its end-of-turn token is). Tokens whose first
character lies in a trained span get their id as label, every other token gets -100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backend.prompting import has_chat_template, render_prompt
from backend.training.formats import Turn

IGNORE_INDEX = -100
# Roles tried, in order, for observation turns when a template does not render "observation".
_OBSERVATION_ROLES = ("observation", "tool", "ipython", "user")


class TemplateRejected(ValueError):
    """The model's chat template refused a conversation."""


@dataclass(frozen=True)
class Encoded:
    """Token ids and labels of one conversation (after truncation to the maximum length)."""

    input_ids: list[int]
    labels: list[int]
    full_length: int  # tokens before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass(frozen=True)
class Rendered:
    """The conversation's text and the character spans that are trained."""

    text: str
    spans: list[tuple[int, int]]


class ChatEncoder:
    """Renders and tokenizes conversations for one tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.has_template = has_chat_template(tokenizer)
        self.observation_role = self._probe_observation_role()
        self.system_supported = self._probe_system()

    # --- rendering -------------------------------------------------------------------------
    def _apply(self, messages: list[dict], generation_prompt: bool = False) -> str:
        if not messages:
            return ""
        try:
            return render_prompt(self.tokenizer, messages, add_generation_prompt=generation_prompt)
        except Exception as exc:  # noqa: BLE001 - jinja raises many kinds
            raise TemplateRejected(f"the model's chat template rejects it: {exc}") from exc

    def _probe_observation_role(self) -> str:
        if not self.has_template:
            return "observation"
        for role in _OBSERVATION_ROLES:
            probe = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"},
                     {"role": role, "content": "OBSERVATION-PROBE"}]
            try:
                if "OBSERVATION-PROBE" in self._apply(probe):
                    return role
            except TemplateRejected:
                continue
        return "user"

    def _probe_system(self) -> bool:
        probe = [{"role": "system", "content": "SYSTEM-PROBE"}, {"role": "user", "content": "u"}]
        try:
            return "SYSTEM-PROBE" in self._apply(probe)
        except TemplateRejected:
            return False

    def messages(self, turns: Sequence[Turn]) -> list[dict]:
        """The turns as template messages (observation role mapped, system folded if need be)."""
        out = []
        for turn in turns:
            role = self.observation_role if turn.role == "observation" else turn.role
            out.append({"role": role, "content": turn.content})
        if out and out[0]["role"] == "system" and not self.system_supported and len(out) > 1:
            system = out.pop(0)["content"]
            out[0] = {**out[0], "content": f"{system}\n\n{out[0]['content']}"}
        return out

    def render(self, turns: Sequence[Turn]) -> Rendered:
        """The whole conversation's text and its trained character spans."""
        folded = bool(turns) and turns[0].role == "system" and not self.system_supported
        messages = self.messages(turns)
        # `messages[k]` corresponds to `turns[k + shift]` when the system turn was folded away.
        shift = 1 if folded and len(turns) > 1 else 0
        full = self._apply(messages)
        spans: list[tuple[int, int]] = []
        prefixes_ok = True
        for k in range(len(messages)):
            turn = turns[k + shift]
            if not turn.loss:
                continue
            before = self._apply(messages[:k])
            after = self._apply(messages[: k + 1])
            start = len(before)
            if turn.role == "assistant":
                header = self._apply(messages[:k], generation_prompt=True) if k else ""
                if header and full.startswith(header):
                    start = len(header)
            if not (full.startswith(before) and full.startswith(after)):
                prefixes_ok = False
                break
            spans.append((start, len(after)))
        if not prefixes_ok:
            spans = self._spans_by_search(full, messages, turns[shift:])
        return Rendered(full, spans)

    def _spans_by_search(self, full: str, messages: list[dict], turns: Sequence[Turn]):
        """For templates whose prefixes are not prefixes of the whole: find each content."""
        spans, cursor = [], 0
        eos = getattr(self.tokenizer, "eos_token", None) or ""
        for message, turn in zip(messages, turns, strict=True):
            pos = full.find(message["content"], cursor)
            if pos < 0:
                continue
            end = pos + len(message["content"])
            if eos and full[end:].lstrip(" \n").startswith(eos):
                end = full.index(eos, end) + len(eos)
            if turn.loss:
                spans.append((pos, end))
            cursor = end
        return spans

    # --- tokenizing ------------------------------------------------------------------------
    def encode(self, turns: Sequence[Turn], max_length: int | None = None) -> Encoded:
        """Token ids and labels; truncated on the right to `max_length` when it is given."""
        rendered = self.render(turns)
        ids, labels = self._tokenize(rendered)
        full_length = len(ids)
        if max_length is not None and full_length > max_length:
            ids, labels = ids[:max_length], labels[:max_length]
        return Encoded(ids, labels, full_length)

    def _tokenize(self, rendered: Rendered) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        add_special = not self.has_template  # the template already holds BOS and friends
        if getattr(tok, "is_fast", False):
            enc = tok(rendered.text, add_special_tokens=add_special, return_offsets_mapping=True)
            ids = list(enc["input_ids"])
            labels = []
            for token_id, (start, end) in zip(ids, enc["offset_mapping"], strict=True):
                trained = end > start and any(a <= start < b for a, b in rendered.spans)
                labels.append(token_id if trained else IGNORE_INDEX)
            return ids, labels
        # Slow tokenizers have no offsets: tokenize the trained and untrained pieces one by one.
        cuts = sorted({0, len(rendered.text), *(p for span in rendered.spans for p in span)})
        ids, labels = [], []
        for a, b in zip(cuts, cuts[1:], strict=False):
            piece = tok(rendered.text[a:b], add_special_tokens=False)["input_ids"]
            trained = any(s <= a < e for s, e in rendered.spans)
            ids.extend(piece)
            labels.extend(piece if trained else [IGNORE_INDEX] * len(piece))
        return ids, labels

    def marked_pieces(self, turns: Sequence[Turn]) -> list[tuple[str, bool]]:
        """The rendered text cut into (piece, trained) runs, for previews."""
        rendered = self.render(turns)
        cuts = sorted({0, len(rendered.text), *(p for span in rendered.spans for p in span)})
        pieces = []
        for a, b in zip(cuts, cuts[1:], strict=False):
            if a < b:
                pieces.append((rendered.text[a:b], any(s <= a < e for s, e in rendered.spans)))
        return pieces
