"""A lean causal-LM loss: the same cross-entropy, a fraction of the memory.

transformers' default loss takes the whole (tokens x vocabulary) logits from the LM head, upcasts
them to fp32 and keeps the log-softmax for backward: about 14 bytes per logit at its peak (a 65k
vocabulary and 4k tokens make that 3.5 GiB). Here the LM head and the cross-entropy are fused:
in training, the head hands its input (the last hidden states) to the loss, which makes the
logits 512 rows at a time, takes their loss and at once the gradient of the hidden states, and
keeps only that gradient (tokens x hidden size). No full logits tensor ever exists. The head's
weight must be frozen (LoRA does not train it); a trainable head keeps the chunked loss on
logits, about 4 bytes per logit.

With packing, the collator also asks the model for logits only where the next token is trained
(`logits_to_keep` + `shift_labels`), so prompt tokens cost nothing in the head.
"""

from __future__ import annotations

import types
from functools import partial

import torch

IGNORE_INDEX = -100
CHUNK = 512  # rows per fp32 chunk: 512 x a 65k vocabulary is 128 MiB


def _chunk_loss_and_grad(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of fp32 logits `x` against `t`; `x` becomes d(loss)/d(logits)."""
    valid = t != IGNORE_INDEX
    safe = torch.where(valid, t, torch.zeros_like(t))
    lse = torch.logsumexp(x, dim=-1)
    picked = x.gather(1, safe[:, None]).squeeze(1)
    total = ((lse - picked) * valid).sum()
    x.sub_(lse[:, None]).exp_()  # softmax, in place
    x[torch.arange(len(t), device=t.device), safe] -= 1.0
    x.mul_(valid[:, None])
    return total


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Sum of token cross-entropies of (N, V) logits; their gradient is made in forward."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        grad = torch.empty_like(logits)
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for start in range(0, logits.shape[0], CHUNK):
            x = logits[start:start + CHUNK].to(torch.float32, copy=True)
            total += _chunk_loss_and_grad(x, targets[start:start + CHUNK])
            grad[start:start + CHUNK].copy_(x)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_output.to(grad.dtype)), None


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of token cross-entropies of `hidden @ weight.T (+ bias)`, (N, H) hidden states; the
    logits exist one chunk at a time, and only the hidden states' gradient is kept."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor) -> torch.Tensor:
        grad = torch.empty_like(hidden)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], CHUNK):
            h = hidden[start:start + CHUNK].to(weight.dtype)
            logits = torch.nn.functional.linear(h, weight, bias)
            x = logits.to(torch.float32, copy=True)
            del logits
            total += _chunk_loss_and_grad(x, targets[start:start + CHUNK])
            grad[start:start + CHUNK] = (x.to(weight.dtype) @ weight).to(grad.dtype)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_output.to(grad.dtype)), None, None, None


def chunked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of (N, V) logits against (N,) targets (-100: ignored)."""
    return _ChunkedCrossEntropy.apply(logits, targets)


def linear_cross_entropy(hidden: torch.Tensor, head: torch.nn.Linear,
                         targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of the frozen `head`'s logits of (N, H) hidden states."""
    return _LinearCrossEntropy.apply(hidden, head.weight, head.bias, targets)


def lean_causal_lm_loss(logits, labels, vocab_size: int, num_items_in_batch=None,
                        ignore_index: int = IGNORE_INDEX, shift_labels=None,
                        head: torch.nn.Linear | None = None, **_kwargs):
    """Drop-in for transformers' ForCausalLMLoss (same arguments, same value). With `head`,
    `logits` may be the head's input (hidden states), which the fused loss takes."""
    if shift_labels is None:
        labels = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)
        shift_labels = labels[..., 1:]
    targets = shift_labels.reshape(-1).to(logits.device)
    if head is not None and logits.shape[-1] == head.in_features != vocab_size:
        total = linear_cross_entropy(logits.reshape(-1, head.in_features), head, targets)
    else:
        total = chunked_cross_entropy(logits.reshape(-1, vocab_size), targets)
    if num_items_in_batch is None:
        return total / (targets != ignore_index).sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def _deferring_forward(self: torch.nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """The head in training hands its input to the loss; elsewhere it makes logits."""
    if self.training and torch.is_grad_enabled():
        return hidden
    return torch.nn.functional.linear(hidden, self.weight, self.bias)


def use_lean_loss(model) -> None:
    """Install the lean loss on a (peft-wrapped or plain) transformers causal LM: fused with a
    frozen linear LM head, chunked on the logits otherwise."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    fusable = (type(head) is torch.nn.Linear and not head.weight.requires_grad
               and (head.bias is None or not head.bias.requires_grad)
               and head.in_features != head.out_features)
    if fusable:
        head.forward = types.MethodType(_deferring_forward, head)
        base.loss_function = partial(lean_causal_lm_loss, head=head)
    else:
        base.loss_function = lean_causal_lm_loss
