"""Attention, masks, MLP and KV cache against torch references (SDPA, explicit formulas, unpadded runs)."""

import math

import pytest
import torch
import torch.nn.functional as F

from zeroforge.errors import ZeroforgeError
from zeroforge.modules.attention import (
    attention,
    causal_mask,
    merge_heads,
    naive_attention,
    padding_mask,
    split_heads,
)
from zeroforge.modules.kv_cache import KVCache
from zeroforge.modules.mlp import MLP


def qkv(B: int = 2, nh: int = 3, T: int = 7, S: int | None = None, hs: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    S = S or T
    return (
        torch.randn(B, nh, T, hs, generator=g),
        torch.randn(B, nh, S, hs, generator=g),
        torch.randn(B, nh, S, hs, generator=g),
    )


def test_naive_matches_formula_written_with_loops():
    q, k, v = qkv(B=1, nh=1, T=4)
    out = naive_attention(q, k, v, is_causal=True)[0, 0]
    for i in range(4):
        scores = torch.stack([q[0, 0, i] @ k[0, 0, j] / math.sqrt(8) for j in range(i + 1)])
        expected = (scores.softmax(0)[:, None] * v[0, 0, : i + 1]).sum(0)
        torch.testing.assert_close(out[i], expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("is_causal", [False, True])
def test_sdpa_equals_naive(is_causal):
    q, k, v = qkv()
    fused = attention(q, k, v, is_causal=is_causal, impl="sdpa")
    naive = attention(q, k, v, is_causal=is_causal, impl="naive")
    torch.testing.assert_close(fused, naive, atol=1e-5, rtol=1e-5)


def test_sdpa_equals_naive_with_padding_mask():
    q, k, v = qkv(B=3, T=6)
    key_padding = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]])
    mask = causal_mask(6, 6, key_padding_mask=key_padding)
    fused = attention(q, k, v, mask=mask, impl="sdpa")
    naive = attention(q, k, v, mask=mask, impl="naive")
    assert torch.isfinite(fused).all() and torch.isfinite(naive).all()  # padded query rows are not NaN
    torch.testing.assert_close(fused, naive, atol=1e-5, rtol=1e-5)


def test_left_padded_rows_equal_the_unpadded_sequence():
    q, k, v = qkv(B=1, T=6)
    pad = 2
    key_padding = torch.tensor([[0] * pad + [1] * (6 - pad)])
    padded = attention(q, k, v, mask=causal_mask(6, 6, key_padding_mask=key_padding))
    alone = attention(q[:, :, pad:], k[:, :, pad:], v[:, :, pad:], is_causal=True)
    torch.testing.assert_close(padded[:, :, pad:], alone, atol=1e-6, rtol=1e-5)


def test_bidirectional_padding_mask_ignores_padded_keys():
    q, k, v = qkv(B=1, T=5)
    key_padding = torch.tensor([[1, 1, 1, 0, 0]])
    out = attention(q, k, v, mask=padding_mask(key_padding))
    dropped = attention(q, k[:, :, :3], v[:, :, :3])
    torch.testing.assert_close(out, dropped, atol=1e-6, rtol=1e-5)


def test_causal_mask_is_bottom_right_aligned_for_cached_queries():
    q, k, v = qkv(T=9)
    full = attention(q, k, v, is_causal=True)
    # The last 3 queries against all 9 keys, as when 6 tokens are cached.
    tail = attention(q[:, :, 6:], k, v, mask=causal_mask(3, 9))
    torch.testing.assert_close(tail, full[:, :, 6:], atol=1e-6, rtol=1e-5)
    for impl in ("sdpa", "naive"):
        # one query at the newest position needs no mask at all
        last = attention(q[:, :, 8:], k, v, impl=impl)
        torch.testing.assert_close(last, full[:, :, 8:], atol=1e-6, rtol=1e-5)


def test_additive_float_mask_equals_bool_mask():
    q, k, v = qkv()
    bool_mask = causal_mask(7, 7)
    float_mask = torch.zeros(bool_mask.shape).masked_fill(~bool_mask, float("-inf"))
    for impl in ("sdpa", "naive"):
        torch.testing.assert_close(
            attention(q, k, v, mask=float_mask, impl=impl), attention(q, k, v, mask=bool_mask, impl=impl)
        )


@pytest.mark.parametrize("impl", ["sdpa", "naive"])
def test_grouped_query_attention_matches_torch(impl):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 6, 5, 4, generator=g)
    k, v = torch.randn(2, 2, 5, 4, generator=g), torch.randn(2, 2, 5, 4, generator=g)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(attention(q, k, v, is_causal=True, impl=impl), expected, atol=1e-5, rtol=1e-5)


def test_split_and_merge_heads_round_trip():
    x = torch.randn(2, 5, 12)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    torch.testing.assert_close(heads[:, 1, :, :], x[:, :, 4:8])
    torch.testing.assert_close(merge_heads(heads), x)


def test_mlp_is_gpt2_gelu_tanh_formula():
    torch.manual_seed(0)
    mlp = MLP(8, 32)
    x = torch.randn(2, 3, 8)
    h = x @ mlp.c_fc.weight.T + mlp.c_fc.bias
    h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    torch.testing.assert_close(mlp(x), h @ mlp.c_proj.weight.T + mlp.c_proj.bias)
    with pytest.raises(ValueError, match="activation"):
        MLP(8, 32, activation="swish")  # type: ignore[arg-type]


def test_kv_cache_positions_masks_and_overflow():
    cache = KVCache(n_layer=1, batch_size=2, n_kv_head=1, head_dim=2, max_length=6)
    positions, mask, is_causal = cache.prepare(3)
    assert positions.tolist() == [[0, 1, 2]] and mask is None and is_causal
    k = torch.randn(2, 1, 3, 2)
    k_all, _ = cache.update(0, k, k)
    torch.testing.assert_close(k_all, k)
    cache.advance(3)
    positions, mask, is_causal = cache.prepare(1)
    assert positions.tolist() == [[3]] and mask is None and not is_causal
    cache.advance(1)

    padded = KVCache(n_layer=1, batch_size=2, n_kv_head=1, head_dim=2, max_length=6)
    positions, mask, _ = padded.prepare(3, torch.tensor([[0, 1, 1], [1, 1, 1]]))
    assert positions.tolist() == [[0, 0, 1], [0, 1, 2]]
    assert mask.shape == (2, 1, 3, 3) and not mask[0, 0, 2, 0] and mask[1, 0, 2, 0]
    padded.advance(3)
    positions, mask, _ = padded.prepare(1)
    assert positions.tolist() == [[2], [3]]
    assert mask[:, 0, 0].tolist() == [[False, True, True, True], [True, True, True, True]]
    padded.advance(1)
    with pytest.raises(ZeroforgeError, match="max_length 6"):
        padded.prepare(3)
