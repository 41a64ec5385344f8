"""Fusing an attention layer's q/k/v projections into one matrix multiply (GPU fast path).

At batch size 1 every projection is a matrix-vector product bound by launch latency as much as
by memory; one product over the concatenated weights replaces three. The separate projections
keep working as views into the fused weight (no extra memory, state dicts unchanged).
"""

from __future__ import annotations

import sys
import types
from typing import Any

# Attention classes whose forward is exactly: q/k/v projections, rotary, cache update, attention
# interface, o_proj. Others are left alone.
FUSIBLE = {"LlamaAttention", "GlmAttention"}


def _attention_interface(module: Any):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    source = sys.modules[type(module).__module__]
    impl = module.config._attn_implementation
    if hasattr(ALL_ATTENTION_FUNCTIONS, "get_interface"):
        return ALL_ATTENTION_FUNCTIONS.get_interface(impl, source.eager_attention_forward)
    return source.eager_attention_forward if impl == "eager" else ALL_ATTENTION_FUNCTIONS[impl]


def _fused_forward(self, hidden_states, position_embeddings=None, attention_mask=None,
                   past_key_values=None, **kwargs):
    import torch.nn.functional as F

    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.head_dim)
    qkv = F.linear(hidden_states, self.qkv_weight, self.qkv_bias)
    query, key, value = qkv.split(self.qkv_sizes, dim=-1)
    query = query.view(hidden_shape).transpose(1, 2)
    key = key.view(hidden_shape).transpose(1, 2)
    value = value.view(hidden_shape).transpose(1, 2)
    cos, sin = position_embeddings
    query, key = self.rotary_fn(query, key, cos, sin)
    if past_key_values is not None:
        key, value = past_key_values.update(key, value, self.layer_idx)
    output, weights = _attention_interface(self)(
        self, query, key, value, attention_mask,
        dropout=0.0 if not self.training else self.attention_dropout,
        scaling=self.scaling, **kwargs,
    )
    output = output.reshape(*input_shape, -1).contiguous()
    return self.o_proj(output), weights


def fuse_qkv(model: Any) -> int:
    """Fuse q/k/v in every supported attention layer of `model`; returns how many were fused."""
    import torch
    from torch import nn

    fused = 0
    for module in model.modules():
        if type(module).__name__ not in FUSIBLE or hasattr(module, "qkv_weight"):
            continue
        projections = [module.q_proj, module.k_proj, module.v_proj]
        if not all(type(p) is nn.Linear for p in projections):
            continue  # quantized or adapter-wrapped layers keep their own forward
        with torch.no_grad():
            weight = torch.cat([p.weight for p in projections]).contiguous()
            has_bias = [p.bias is not None for p in projections]
            bias = None
            if all(has_bias):
                bias = torch.cat([p.bias for p in projections]).contiguous()
            elif any(has_bias):
                continue
        sizes = [p.out_features for p in projections]
        start = 0
        for proj, size in zip(projections, sizes, strict=True):
            proj.weight = nn.Parameter(weight[start:start + size], requires_grad=False)
            if bias is not None:
                proj.bias = nn.Parameter(bias[start:start + size], requires_grad=False)
            start += size
        module.qkv_weight, module.qkv_bias, module.qkv_sizes = weight, bias, sizes
        module.rotary_fn = sys.modules[type(module).__module__].apply_rotary_pos_emb
        module.forward = types.MethodType(_fused_forward, module)
        fused += 1
    return fused


def unfuse_qkv(model: Any) -> int:
    """Give fused layers back their own forward, which calls q_proj/k_proj/v_proj (so that
    adapters wrapping those projections take effect); the weights stay where they are."""
    restored = 0
    for module in model.modules():
        if hasattr(module, "qkv_weight"):
            del module.forward, module.qkv_weight, module.qkv_bias, module.qkv_sizes
            del module.rotary_fn
            restored += 1
    return restored
