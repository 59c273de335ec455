"""The shared mask and position prologue (modules/masks.py) against masks written out entry by entry."""

from __future__ import annotations

import pytest
import torch

from zeroforge.errors import ZeroforgeError
from zeroforge.modules.kv_cache import KVCache
from zeroforge.modules.masks import (
    decoder_inputs,
    encoder_inputs,
    segment_mask,
    segment_positions,
)


def brute_force_mask(seg, causal=True):
    B, T = seg.shape
    out = torch.zeros(B, 1, T, T, dtype=torch.bool)
    for b in range(B):
        for i in range(T):
            for j in range(T):
                ordered = j <= i or not causal
                out[b, 0, i, j] = (ordered and seg[b, i] == seg[b, j] and seg[b, j] != 0) or i == j
    return out


SEG = torch.tensor([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])


def test_segment_mask_and_positions():
    assert torch.equal(segment_mask(SEG), brute_force_mask(SEG))
    assert segment_positions(SEG).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1], list(range(8))]


def test_bidirectional_segment_mask_sees_its_whole_example_only():
    assert torch.equal(segment_mask(SEG, causal=False), brute_force_mask(SEG, causal=False))


def test_decoder_inputs_for_each_kind_of_batch():
    ids = torch.zeros(2, 5, dtype=torch.long)
    positions, mask, is_causal = decoder_inputs(ids)
    assert positions.tolist() == [[0, 1, 2, 3, 4]] and mask is None and is_causal

    left_padded = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    positions, mask, is_causal = decoder_inputs(ids, attention_mask=left_padded)
    assert positions.tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]] and not is_causal
    # query 3 of row 0 sees the real keys 2 and 3; a padding query keeps its own key only
    assert mask[0, 0, 3].tolist() == [False, False, True, True, False]
    assert mask[0, 0, 1].tolist() == [False, True, False, False, False]

    seg = SEG[:, :5]
    positions, mask, is_causal = decoder_inputs(ids, attention_mask=left_padded, segment_ids=seg)
    assert torch.equal(mask, segment_mask(seg)) and torch.equal(positions, segment_positions(seg))
    explicit = torch.arange(10, 15)[None]
    assert torch.equal(decoder_inputs(ids, position_ids=explicit)[0], explicit)


def test_decoder_inputs_with_a_cache_continue_its_positions():
    cache = KVCache(n_layer=1, batch_size=1, n_kv_head=1, head_dim=2, max_length=8)
    ids = torch.zeros(1, 3, dtype=torch.long)
    assert decoder_inputs(ids, cache=cache)[0].tolist() == [[0, 1, 2]]
    cache.advance(3)
    positions, mask, _ = decoder_inputs(ids[:, :1], cache=cache)
    assert positions.tolist() == [[3]]
    with pytest.raises(ZeroforgeError, match="segment_ids"):
        decoder_inputs(ids, segment_ids=torch.ones(1, 3, dtype=torch.long), cache=cache)


def test_encoder_inputs_need_no_mask_without_padding():
    ids = torch.zeros(2, 4, dtype=torch.long)
    positions, mask = encoder_inputs(ids, attention_mask=torch.ones(2, 4))
    assert positions.tolist() == [[0, 1, 2, 3]] and mask is None
    positions, mask = encoder_inputs(ids, attention_mask=torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]))
    assert mask.shape == (2, 1, 1, 4) and mask[0, 0, 0].tolist() == [True, True, True, False]
    positions, mask = encoder_inputs(ids, segment_ids=SEG[:, :4])
    assert torch.equal(mask, segment_mask(SEG[:, :4], causal=False))
    assert positions.tolist() == [[0, 1, 2, 0], [0, 1, 2, 3]]
