"""The training's speed parts on the CPU: the fused loss, the attention choice, varlen attention's
fallback, the packing collator's example boundaries, and compilation (GPU only).

The varlen flash kernel itself needs a GPU: `bench/train_throughput.py` checks it there against
sdpa (loss and LoRA gradients, beside sdpa's own bf16 noise floor), and `unavailable_reason`
runs a small forward-and-backward self-check before any run uses it.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GlmConfig, GlmForCausalLM

from backend.training import varlen_attention
from backend.training.collate import PackingCollator
from backend.training.errors import TrainingError
from backend.training.loss import (
    CHUNK,
    chunked_cross_entropy,
    lean_causal_lm_loss,
    linear_cross_entropy,
    use_lean_loss,
)
from backend.training.modeling import Precision, choose_attention, compile_layers

CPU = Precision("cpu", False, False)


def _targets(n: int, vocab: int) -> torch.Tensor:
    targets = torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(1))
    targets[::5] = -100
    return targets


def test_chunked_and_fused_losses_match_cross_entropy_across_chunks():
    n, hidden_size, vocab = 2 * CHUNK + 77, 48, 300
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, hidden_size, generator=gen, requires_grad=True)
    head = torch.nn.Linear(hidden_size, vocab, bias=True)
    head.requires_grad_(False)
    targets = _targets(n, vocab)

    want = torch.nn.functional.cross_entropy(head(hidden), targets, reduction="sum")
    (want_grad,) = torch.autograd.grad(want, hidden)

    fused = linear_cross_entropy(hidden, head, targets)
    (fused_grad,) = torch.autograd.grad(fused * 2.0, hidden)  # the upstream gradient counts
    assert torch.allclose(fused, want, rtol=1e-5)
    assert torch.allclose(fused_grad, 2.0 * want_grad, atol=1e-5)

    logits = head(hidden).detach().requires_grad_(True)
    chunked = chunked_cross_entropy(logits, targets)
    (logit_grad,) = torch.autograd.grad(chunked, logits)
    (want_logit_grad,) = torch.autograd.grad(
        torch.nn.functional.cross_entropy(logits, targets, reduction="sum"), logits)
    assert torch.allclose(chunked, want, rtol=1e-5)
    assert torch.allclose(logit_grad, want_logit_grad, atol=1e-6)


def _tiny_glm() -> GlmForCausalLM:
    config = GlmConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16, intermediate_size=128,
                       vocab_size=120, pad_token_id=0)
    torch.manual_seed(0)
    return GlmForCausalLM(config)


def test_lean_loss_fuses_a_frozen_head_in_training_only():
    model = _tiny_glm()
    model.requires_grad_(False)
    use_lean_loss(model)
    ids = torch.randint(1, 120, (2, 9), generator=torch.Generator().manual_seed(2))
    model.train()
    fused = model(input_ids=ids, labels=ids)
    assert fused.logits.shape[-1] == 64  # the head handed its input to the loss
    model.eval()
    plain = model(input_ids=ids, labels=ids)
    assert plain.logits.shape[-1] == 120  # evaluation and generation get real logits
    assert torch.allclose(fused.loss, plain.loss, atol=1e-5)
    want = lean_causal_lm_loss(plain.logits, ids, 120)
    assert torch.allclose(plain.loss, want, atol=1e-6)


def test_a_trainable_head_is_not_fused():
    model = _tiny_glm()  # every weight trainable, the head too
    use_lean_loss(model)
    model.train()
    ids = torch.randint(1, 120, (1, 7), generator=torch.Generator().manual_seed(3))
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape[-1] == 120
    out.loss.backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0


def test_attention_choice_on_the_cpu():
    assert choose_attention("auto", CPU, packing=True) == "sdpa"
    assert choose_attention("eager", CPU, packing=True) == "eager"
    with pytest.raises(TrainingError, match="varlen attention is not available: no CUDA GPU"):
        choose_attention("varlen", CPU, packing=True)
    with pytest.raises(TrainingError, match="attention must be one of"):
        choose_attention("fast", CPU)
    assert "no CUDA GPU" in varlen_attention.unavailable_reason(torch.bfloat16)


def test_varlen_implementation_without_boundaries_equals_sdpa():
    """Batches with padding, or without packing, take sdpa with the same mask."""
    varlen_attention.register()
    model = _tiny_glm().eval()
    ids = torch.randint(1, 120, (2, 11), generator=torch.Generator().manual_seed(4))
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[1, 7:] = 0  # right padding
    out = {}
    for name in ("sdpa", varlen_attention.NAME):
        model.config._attn_implementation = name
        with torch.no_grad():
            out[name] = (model(input_ids=ids, attention_mask=mask).logits,
                         model(input_ids=ids).logits)
    (padded, full), (padded_v, full_v) = out["sdpa"], out[varlen_attention.NAME]
    assert torch.allclose(full, full_v, atol=1e-5)
    assert torch.allclose(padded[0], padded_v[0], atol=1e-5)
    assert torch.allclose(padded[1, :7], padded_v[1, :7], atol=1e-5)


def test_packing_collator_gives_the_examples_boundaries():
    rows = [[{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
             {"input_ids": [8, 9], "labels": [-100, 9]}],
            [{"input_ids": [10, 11, 12, 13], "labels": [-100, -100, 12, 13]}]]
    batch = PackingCollator(trained_logits_only=True)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 12, 13]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5, 9]
    assert batch["cu_seq_lens_q"].dtype == torch.int32
    assert batch["max_length_q"] == 4


def test_layers_compile_on_gpus_only():
    model = _tiny_glm()
    assert compile_layers(model, "cpu") == "layers are compiled on GPUs only"
    assert not any(hasattr(layer, "_compiled_call_impl") and layer._compiled_call_impl
                   for layer in model.model.layers)
