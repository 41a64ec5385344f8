"""A lean causal-LM loss: the same cross-entropy, a fraction of the memory.

transformers' default loss upcasts the whole (tokens x vocabulary) logits to fp32 and keeps the
log-softmax for backward: about 14 bytes per logit at its peak (a 65k vocabulary and 4k tokens
make that 3.5 GiB). Here the loss is computed in chunks and the gradient of the logits is
computed in the forward pass and kept in the logits' dtype: about 4 bytes per logit.

With packing, the collator also asks the model for logits only where the next token is trained
(`logits_to_keep` + `shift_labels`), so prompt tokens cost no logits at all.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100
CHUNK = 2048


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Sum of token cross-entropies; the logits' gradient is computed in the forward pass."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        grad = torch.empty_like(logits)
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for start in range(0, logits.shape[0], CHUNK):
            x = logits[start:start + CHUNK].to(torch.float32, copy=True)
            t = targets[start:start + CHUNK]
            valid = t != IGNORE_INDEX
            safe = torch.where(valid, t, torch.zeros_like(t))
            lse = torch.logsumexp(x, dim=-1)
            picked = x.gather(1, safe[:, None]).squeeze(1)
            total += ((lse - picked) * valid).sum()
            probs = torch.exp(x.sub_(lse[:, None]))  # softmax, in place of x
            probs[torch.arange(len(t), device=t.device), safe] -= 1.0
            probs.mul_(valid[:, None])
            grad[start:start + CHUNK] = probs.to(grad.dtype)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_output.to(grad.dtype)), None


def chunked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of (N, V) logits against (N,) targets (-100: ignored)."""
    return _ChunkedCrossEntropy.apply(logits, targets)


def lean_causal_lm_loss(logits, labels, vocab_size: int, num_items_in_batch=None,
                        ignore_index: int = IGNORE_INDEX, shift_labels=None, **_kwargs):
    """Drop-in for transformers' ForCausalLMLoss (same arguments, same value)."""
    if shift_labels is None:
        labels = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)
        shift_labels = labels[..., 1:]
    targets = shift_labels.reshape(-1).to(logits.device)
    total = chunked_cross_entropy(logits.reshape(-1, vocab_size), targets)
    if num_items_in_batch is None:
        return total / (targets != ignore_index).sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def use_lean_loss(model) -> None:
    """Install the lean loss on a (peft-wrapped or plain) transformers causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.loss_function = lean_causal_lm_loss
