"""Which attention mask and position ids a batch needs: the prologue every transformer family shares.

A batch describes its rows in one of three ways, and each family's ``hidden_states`` turns that into
(position ids, attention mask, ``is_causal``) here rather than on its own:

- nothing: every token is real; positions 0..T-1, and no mask at all (a decoder uses the fused
  causal kernel, ``is_causal=True``);
- ``attention_mask`` (B, T), 1 = real token, 0 = padding: padded keys are never attended. In a decoder
  positions count real tokens only, so left padding leaves each sequence's positions as they are alone;
- ``segment_ids`` (B, T), packed rows: several examples share a row, numbered 1, 2, ... (0 = padding).
  Attention is block-diagonal -- a token attends to its own example only (and causally in a decoder)
  -- and positions restart at 0 for each example, so every example is computed as if alone in its row.

The mask conventions (bool, True = may attend, (B|1, 1, T, S)) are those of ``modules/attention.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from zeroforge.errors import ZeroforgeError
from zeroforge.modules.attention import causal_mask, padding_mask
from zeroforge.modules.kv_cache import KVCache


class DecoderInputs(NamedTuple):
    """What every layer of a decoder needs besides its input: positions and how to attend."""

    positions: torch.Tensor  # (1|B, T)
    mask: torch.Tensor | None  # bool (B|1, 1, T, S), True = attend; None with is_causal or one query
    is_causal: bool  # SDPA's fused causal path (no mask materialised)


def segment_mask(segment_ids: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Block-diagonal attention for packed rows: (B, T) -> bool (B, 1, T, T), True = attend.

    Query i may attend key j when both belong to the same example (and j <= i when ``causal``).
    A padding query (segment 0) keeps its own key, so its softmax row is never empty (its output is
    never used).
    """
    T = segment_ids.size(1)
    allowed = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B, T, T) same example
    if causal:
        allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
    real_key = (segment_ids != 0)[:, None, :]  # (B, 1, T)
    own = torch.eye(T, dtype=torch.bool, device=segment_ids.device)  # (T, T)
    return ((allowed & real_key) | own)[:, None]  # (B, 1, T, T)


def segment_positions(segment_ids: torch.Tensor) -> torch.Tensor:
    """Positions that restart at 0 at every example of a packed row: (B, T) -> (B, T)."""
    T = segment_ids.size(1)
    index = torch.arange(T, device=segment_ids.device).expand_as(segment_ids)  # (B, T)
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]  # (B, T) first token of each example
    start_index = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values  # (B, T)
    return index - start_index


def decoder_inputs(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    segment_ids: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    cache: KVCache | None = None,
) -> DecoderInputs:
    """Position ids, causal attention mask and ``is_causal`` for a decoder's batch (module docstring).

    With a ``cache`` the new tokens attend over everything cached (``KVCache.prepare``). Explicit
    ``position_ids`` replace the computed ones.
    """
    T = input_ids.size(1)
    if cache is not None:
        if segment_ids is not None:
            raise ZeroforgeError("segment_ids: packed rows cannot be decoded with a KV cache")
        positions, mask, is_causal = cache.prepare(T, attention_mask)
    elif segment_ids is not None:
        positions, mask, is_causal = segment_positions(segment_ids), segment_mask(segment_ids), False
    elif attention_mask is not None:
        key_padding = attention_mask.bool()  # (B, T)
        mask, is_causal = causal_mask(T, T, input_ids.device, key_padding), False  # (B, 1, T, T)
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
    else:
        mask, is_causal = None, True  # fused causal attention, no mask materialised
        positions = torch.arange(T, device=input_ids.device)[None]  # (1, T)
    if position_ids is not None:
        positions = position_ids
    return DecoderInputs(positions, mask, is_causal)


def encoder_inputs(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    segment_ids: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Position ids and bidirectional attention mask (or None) for an encoder's batch.

    Padding is on the right, so real tokens keep positions 0..n-1 whatever the padding, and a row
    with no padding needs no mask. Explicit ``position_ids`` replace the computed ones.
    """
    T = input_ids.size(1)
    if segment_ids is not None:
        positions, mask = segment_positions(segment_ids), segment_mask(segment_ids, causal=False)
    else:
        positions, mask = torch.arange(T, device=input_ids.device)[None], None  # (1, T)
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = padding_mask(attention_mask)  # (B, 1, 1, T): every query sees every real key
    if position_ids is not None:
        positions = position_ids
    return positions, mask


def shift_right(labels: torch.Tensor, start_id: int) -> torch.Tensor:
    """Teacher forcing's decoder inputs: the start token, then ``labels`` without their last column
    (B, T) -> (B, T); ignored positions (-100) become 0, whose logits the loss ignores anyway."""
    start = torch.full_like(labels[:, :1], start_id)
    return torch.cat([start, labels[:, :-1].clamp(min=0)], dim=1)
