"""Batches: padded to the longest in the batch, or packed without padding.

Packing (padding-free): examples are packed into rows of at most `max_length` tokens once
(best fit, in a seeded random order); a micro-batch of rows is then flattened into one sequence
by transformers' DataCollatorWithFlattening, whose `position_ids` restart at every example. The
model's attention keeps examples apart (sdpa: a block-diagonal causal mask built from the
restarts; `varlen` attention: the boundaries `cu_seq_lens`, each example on its own), so no
token attends across examples and no pad token is computed.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from backend.training.encoding import IGNORE_INDEX, Encoded


class ExampleDataset(Dataset):
    """One item per example: input_ids and labels."""

    def __init__(self, examples: Sequence[Encoded]) -> None:
        self.items = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


class PackedDataset(Dataset):
    """One item per packed row: a list of examples whose lengths sum to at most `max_length`."""

    def __init__(self, examples: Sequence[Encoded], max_length: int, seed: int = 0) -> None:
        self.rows = pack(
            [len(e.input_ids) for e in examples], max_length, seed
        )
        self.items = [[{"input_ids": examples[i].input_ids, "labels": examples[i].labels}
                       for i in row] for row in self.rows]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> list[dict]:
        return self.items[index]


def pack(lengths: Sequence[int], capacity: int, seed: int = 0) -> list[list[int]]:
    """Best-fit packing of example indices into rows of at most `capacity` tokens."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free tokens, row index), sorted
    for index in order:
        need = min(lengths[index], capacity)
        pos = bisect.bisect_left(free, (need, -1))
        if pos < len(free):
            room, row = free.pop(pos)
            rows[row].append(index)
            if room - need > 0:
                bisect.insort(free, (room - need, row))
        else:
            rows.append([index])
            if capacity - need > 0:
                bisect.insort(free, (capacity - need, len(rows) - 1))
    return rows


class PaddingCollator:
    """Pads to the longest sequence of the batch (right side); pads are never trained."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            longest = -(-longest // self.multiple) * self.multiple
        ids, labels, mask = [], [], []
        for f in features:
            gap = longest - len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * gap)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * gap)
            mask.append([1] * len(f["input_ids"]) + [0] * gap)
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}


class PackingCollator:
    """Flattens the examples of every packed row of a micro-batch into one padding-free row.

    With `trained_logits_only`, it adds `logits_to_keep` (the positions whose next token is
    trained) and `shift_labels` (those next tokens): the model computes logits only there.
    """

    def __init__(self, trained_logits_only: bool = False) -> None:
        from transformers import DataCollatorWithFlattening

        # separator_id -100: the first label of every example is not trained (it would be
        # predicted from the previous example's last token).
        # The examples' boundaries (cu_seq_lens) serve varlen attention; others ignore them.
        self.flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100,
                                                  return_flash_attn_kwargs=True)
        self.trained_logits_only = trained_logits_only

    def __call__(self, rows: list[list[dict]]) -> dict[str, Any]:
        examples = [example for row in rows for example in row]
        batch = self.flatten(examples)
        if self.trained_logits_only:
            following = batch["labels"][0, 1:]
            keep = (following != IGNORE_INDEX).nonzero().squeeze(-1)
            batch["logits_to_keep"] = keep
            batch["shift_labels"] = following[keep][None, :]
        return batch


def count_tokens(batch: dict[str, Any]) -> int:
    """Real (non-padding) tokens in a batch."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel())
