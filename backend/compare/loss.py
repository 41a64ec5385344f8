"""Validation loss on a reference answer: the negative log-likelihood of its tokens given the
prompt, the same span training puts its loss on (the answer and its end-of-turn token)."""

from __future__ import annotations

from typing import Any

from backend.generation import forward_accepts
from backend.training.encoding import IGNORE_INDEX, ChatEncoder
from backend.training.formats import Turn


def reference_nll(model: Any, encoder: ChatEncoder, turns: tuple[Turn, ...],
                  context_length: int) -> tuple[float, int]:
    """(summed NLL in nats, token count) of the last turn; the oldest tokens go if too long."""
    import torch

    marked = [Turn(t.role, t.content, i == len(turns) - 1, t.message)
              for i, t in enumerate(turns)]
    encoded = encoder.encode(marked)
    ids, labels = encoded.input_ids[-context_length:], encoded.labels[-context_length:]
    # Position i predicts token i + 1: keep the logits of positions whose next token is trained.
    positions = [i for i in range(len(ids) - 1) if labels[i + 1] != IGNORE_INDEX]
    if not positions:
        return 0.0, 0
    device = model.get_input_embeddings().weight.device
    index = torch.tensor(positions, device=device)
    targets = torch.tensor([labels[i + 1] for i in positions], device=device)
    kwargs: dict[str, Any] = {"use_cache": False}
    if forward_accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = index
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=device), **kwargs).logits[0]
        if "logits_to_keep" not in kwargs:
            logits = logits[index]
        nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return float(nll), len(positions)
