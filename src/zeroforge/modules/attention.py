"""Scaled dot-product attention, softmax(QK^T / sqrt(d_k)) V, and the masks that feed it.

The q/k/v projections belong to each model (GPT fuses them in one Linear, BERT and Llama keep three);
what every family shares is the attention itself and the mask conventions:

- a *key padding mask* is a ``(B, S)`` bool/int tensor, true/1 where the key is a real token;
- an *attention mask* passed to ``attention`` is either bool ``(B|1, 1|nh, T, S)`` (True = may attend)
  or an additive float mask of the same shape (0 = attend, -inf = masked);
- ``is_causal=True`` (no mask) is the fast path for a plain causal prefill/training step.

``attention(..., impl="sdpa")`` calls PyTorch's fused kernel; ``impl="naive"`` writes the formula out
and is the reference the fused path is tested against. ``impl="auto"`` picks whichever is faster:
the fused kernel, except in two cases measured on a CPU (AMD EPYC, AVX-512 bf16, torch 2.13; see
docs/benchmarks.md), where two matmuls and a softmax win:

- bf16 training on CPU: the CPU flash kernel's backward in bf16 is 2-3x slower than the written-out
  formula at the sequence lengths a CPU trains on (64-256);
- one-query decode steps inside ``torch.compile``: inductor fuses mask, softmax and both products
  into a few small loops, where the fused kernel is an opaque call with a mask.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F

AttentionImpl = Literal["auto", "sdpa", "naive"]


def naive_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Reference attention, same semantics as ``F.scaled_dot_product_attention``.

    q: (B, nh, T, hs); k, v: (B, nh, S, hs); mask: bool (True = attend) or additive float,
    broadcastable to (B, nh, T, S). ``is_causal`` aligns the triangle top-left like SDPA does.
    """
    T, S = q.size(-2), k.size(-2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))  # (B, nh, T, S)
    if is_causal:
        causal = torch.ones(T, S, dtype=torch.bool, device=q.device).tril()
        att = att.masked_fill(~causal, float("-inf"))
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else att + mask
    # softmax in at least fp32, as the fused kernels do for bf16/fp16 inputs
    att = F.softmax(att, dim=-1, dtype=torch.promote_types(att.dtype, torch.float32)).to(v.dtype)
    if dropout_p > 0.0:
        att = F.dropout(att, p=dropout_p)
    return att @ v  # (B, nh, T, hs)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    impl: AttentionImpl = "sdpa",
) -> torch.Tensor:
    """Multi-head attention over already-projected heads.

    q: (B, nh, T, hs); k, v: (B, nkv, S, hs) with ``nh % nkv == 0`` (grouped-query attention:
    each K/V head serves nh / nkv query heads). Returns (B, nh, T, hs). Pass ``dropout_p=0``
    at eval time; this function does not know the module's training flag.
    """
    if k.size(1) != q.size(1):
        groups = q.size(1) // k.size(1)
        k = k.repeat_interleave(groups, dim=1)  # (B, nh, S, hs)
        v = v.repeat_interleave(groups, dim=1)
    if _captures:  # inside capture_attention(): the probabilities on the side, the output as always
        _captures[-1].append(attention_probs(q, k, mask, is_causal).detach())
    if impl == "auto":
        impl = "naive" if _written_out_is_faster(q) else "sdpa"
    if impl == "sdpa":
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal
        )
    return naive_attention(q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout_p)


def attention_probs(
    q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None, is_causal: bool = False
) -> torch.Tensor:
    """softmax(QK^T / sqrt(d_k) + mask) in at least fp32: what each query gives each key.

    q: (B, nh, T, hs); k: (B, nh, S, hs); ``mask`` and ``is_causal`` as ``attention``. Returns (B, nh, T, S).
    """
    T, S = q.size(-2), k.size(-2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))  # (B, nh, T, S)
    if is_causal:
        att = att.masked_fill(~torch.ones(T, S, dtype=torch.bool, device=q.device).tril(), float("-inf"))
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else att + mask
    return F.softmax(att, dim=-1, dtype=torch.promote_types(att.dtype, torch.float32))


_captures: list[list[torch.Tensor]] = []
"""The open ``capture_attention`` blocks, innermost last; empty (the usual case) costs one truth test."""


@contextmanager
def capture_attention() -> Iterator[list[torch.Tensor]]:
    """Record the attention probabilities of every ``attention`` call made inside the block.

        with capture_attention() as maps:
            model(input_ids)
        # maps[i]: (B, nh, T, S), the i-th attention call (for GPT, Llama, BERT: layer i)

    The model's outputs are unchanged: its own kernel (fused or not) still computes them, and the
    probabilities are computed once more beside it by ``attention_probs`` (detached, before dropout).
    """
    maps: list[torch.Tensor] = []
    _captures.append(maps)
    try:
        yield maps
    finally:
        _captures.pop()


def _written_out_is_faster(q: torch.Tensor) -> bool:
    """``impl="auto"``'s rule (module docstring): bf16 training on CPU, or a compiled one-query step."""
    if q.device.type != "cpu":
        return False
    bf16_training = q.dtype == torch.bfloat16 and torch.is_grad_enabled() and q.requires_grad
    compiled_step = q.size(-2) == 1 and torch.compiler.is_compiling()
    return bf16_training or compiled_step


def padding_mask(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """Bidirectional (BERT-style) mask: every query may attend every real key. (B, S) -> (B, 1, 1, S)."""
    return key_padding_mask.bool()[:, None, None, :]


def causal_mask(
    q_len: int,
    kv_len: int,
    device: torch.device | None = None,
    key_padding_mask: torch.Tensor | None = None,
    width: int | None = None,
) -> torch.Tensor:
    """Causal mask for ``q_len`` queries that are the *last* ``q_len`` of ``kv_len`` keys.

    Query i sits at absolute position ``kv_len - q_len + i`` and may attend keys at or before it
    (bottom-right aligned, which is what a KV cache needs; SDPA's ``is_causal`` is top-left).
    With ``key_padding_mask`` (B, kv_len) only real keys are attended, except that every query
    keeps its own key: a padding query would otherwise have no key at all and softmax would
    return NaN (its output is never used). Returns bool (B|1, 1, q_len, kv_len), True = attend.
    ``width`` > kv_len adds columns for keys not written yet (a static-shape KV cache), all masked;
    ``key_padding_mask`` then has ``width`` columns.
    """
    k_pos = torch.arange(width or kv_len, device=device)  # (S,)
    q_pos = torch.arange(kv_len - q_len, kv_len, device=device)[:, None]  # (T, 1)
    allowed = k_pos[None, :] <= q_pos  # (T, S)
    if key_padding_mask is not None:
        own_key = k_pos[None, :] == q_pos  # (T, S)
        allowed = allowed & (key_padding_mask.bool()[:, None, :] | own_key)  # (B, T, S)
    else:
        allowed = allowed[None]  # (1, T, S)
    return allowed[:, None]  # (B|1, 1, T, S)


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, n_head * hs) -> (B, n_head, T, hs)."""
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, nh, T, hs) -> (B, T, nh * hs), re-assembling all head outputs side by side."""
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).contiguous().view(B, T, nh * hs)
