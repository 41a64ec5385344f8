"""Variable-length (padding-free) flash attention for packed training batches.

With packing, a micro-batch is one flattened row of several examples. sdpa can keep them apart
only with a block-diagonal mask over the whole row, and its kernels then compute every masked
block too (a 4,096-token row costs 16x the attention of four 1,024-token ones). PyTorch's
`torch.nn.attention.varlen.varlen_attn` runs the flash kernel over each example on its own,
given the examples' boundaries (`cu_seq_lens`, which the packing collator adds).

It is registered with transformers as the attention implementation `varlen`. Batches without
boundaries (evaluation with padding, generation) go through plain sdpa with the model's mask.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F

NAME = "varlen"


_KERNEL: list = []  # [varlen_attn, its parameter names] once looked up (None: torch lacks it)


def _kernel() -> tuple[Any, frozenset[str]] | None:
    """torch's `varlen_attn` and its parameter names, which differ between torch versions.
    Looked up once (by `register` or the self-check), not while torch.compile traces a layer."""
    if not _KERNEL:
        try:
            from torch.nn.attention.varlen import varlen_attn
        except ImportError:
            _KERNEL.append(None)
        else:
            _KERNEL.append((varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)))
    return _KERNEL[0]


def _repeat_heads(x: torch.Tensor, groups: int, dim: int) -> torch.Tensor:
    return x if groups == 1 else x.repeat_interleave(groups, dim=dim)


def _dense_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float,
                     scaling: float | None) -> torch.Tensor:
    """sdpa for batches without example boundaries; `attention_mask` is None (causal), a 2D
    padding mask, or a ready 4D mask."""
    groups = query.shape[1] // key.shape[1]
    key, value = _repeat_heads(key, groups, 1), _repeat_heads(value, groups, 1)
    q_len, kv_len = query.shape[2], key.shape[2]
    mask, causal = None, q_len > 1
    if attention_mask is not None:
        if attention_mask.dim() == 2:
            tri = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device)
            tri = tri.tril(kv_len - q_len)
            mask = tri[None, None] & attention_mask[:, None, None, -kv_len:].bool()
        else:
            mask = attention_mask
        causal = False
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, is_causal=causal, scale=scaling,
        dropout_p=dropout if module.training else 0.0)
    return out.transpose(1, 2).contiguous()


def _packed_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      cu_seq_lens: torch.Tensor, max_length: int,
                      scaling: float | None) -> torch.Tensor:
    """Flash varlen attention over a (1, heads, tokens, dim) flattened row."""
    varlen_attn, params = _kernel()
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, dim)
    groups = q.shape[1] // k.shape[1]
    extra: dict[str, Any] = {}
    if groups > 1 and "enable_gqa" in params:
        extra["enable_gqa"] = True
    else:
        k, v = _repeat_heads(k, groups, 1), _repeat_heads(v, groups, 1)
    if scaling is not None:  # (no float comparison here: torch.compile traces this function)
        if "scale" in params:
            extra["scale"] = scaling
        else:  # the kernel's own scale is 1/sqrt(dim)
            q = q * (scaling * q.shape[-1] ** 0.5)
    if "is_causal" in params:
        extra["is_causal"] = True
    else:  # torch 2.10-2.12: causal is a window reaching no token to the right
        extra["window_size"] = (-1, 0)
    cu = cu_seq_lens.to(device=q.device, dtype=torch.int32)
    out = varlen_attn(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu, int(max_length),
                      int(max_length), **extra)
    return out[None]  # (1, tokens, heads, dim)


def varlen_attention_forward(module: Any, query: torch.Tensor, key: torch.Tensor,
                             value: torch.Tensor, attention_mask: torch.Tensor | None,
                             dropout: float = 0.0, scaling: float | None = None,
                             cu_seq_lens_q: torch.Tensor | None = None,
                             max_length_q: int | None = None, **_kwargs):
    """transformers' attention-function interface: returns (output, no attention weights)."""
    packed = (cu_seq_lens_q is not None and max_length_q is not None and query.shape[0] == 1
              and query.is_cuda and (dropout == 0.0 or not module.training))
    if packed:
        return _packed_attention(query, key, value, cu_seq_lens_q, max_length_q, scaling), None
    return _dense_attention(module, query, key, value, attention_mask, dropout, scaling), None


def _padding_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0,
                  kv_offset: int = 0, attention_mask: torch.Tensor | None = None,
                  **_kwargs) -> torch.Tensor | None:
    """No mask when nothing is padded (causal, or packed with boundaries); else the 2D mask."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask[:, kv_offset:kv_offset + kv_length]


def register() -> None:
    """Make `varlen` a valid `attn_implementation` for transformers models."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    _kernel()
    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, _padding_mask)


def unavailable_reason(dtype: torch.dtype) -> str | None:
    """Why varlen attention cannot train here (None: it can). Runs a tiny forward and backward
    on the GPU, so a torch build whose kernel is missing or different is found before training."""
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    if dtype not in (torch.float16, torch.bfloat16):
        return f"flash kernels need fp16/bf16, not {dtype}"
    if _kernel() is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen"
    try:
        _self_check(dtype)
    except Exception as exc:  # noqa: BLE001 - any failure means: use sdpa instead
        return f"varlen attention failed a self-check: {type(exc).__name__}: {exc}"[:300]
    return None


def _self_check(dtype: torch.dtype) -> None:
    """Two packed sequences through varlen and through masked sdpa: outputs and gradients agree."""
    generator = torch.Generator(device="cuda").manual_seed(0)
    lengths, heads, kv_heads, dim = (5, 11), 4, 2, 64
    total = sum(lengths)

    def rand(h: int) -> torch.Tensor:
        return torch.randn(1, h, total, dim, device="cuda", dtype=dtype, generator=generator,
                           requires_grad=True)

    q, k, v = rand(heads), rand(kv_heads), rand(kv_heads)
    cu = torch.tensor([0, lengths[0], total], device="cuda", dtype=torch.int32)
    out = _packed_attention(q, k, v, cu, max(lengths), None)
    seq = torch.repeat_interleave(torch.arange(2, device="cuda"),
                                  torch.tensor(lengths, device="cuda"))
    mask = (seq[:, None] == seq[None, :]) & torch.ones(total, total, dtype=torch.bool,
                                                       device="cuda").tril()
    ref = _dense_attention(torch.nn.Module(), q, k, v, mask[None, None], 0.0, None)
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.float().square().sum(), (q, k, v))
    for got, want in zip((out, *grads), (ref, *ref_grads), strict=True):
        if not torch.allclose(got.float(), want.float(), atol=5e-2, rtol=5e-2):
            raise RuntimeError("its results differ from sdpa's")
