"""One vector per sequence from a transformer's hidden states."""

from __future__ import annotations

import torch


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, C) over the real tokens of ``attention_mask`` (B, T) -> (B, C).

    Sentence-BERT's mean pooling (Reimers & Gurevych 2019); [CLS] and [SEP] count as tokens.
    """
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, C)
