"""Right-padding variable-length rows into a batch: the one padding helper every objective's
``collate`` uses (classification, SFT, packed SFT, BERT's masked pairs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Row = Sequence[int] | np.ndarray


def right_padded(rows: Sequence[Row], fill: int) -> torch.Tensor:
    """``rows`` as one int64 tensor (B, T), each row right-padded with ``fill`` to the longest."""
    T = max(len(r) for r in rows)
    out = np.full((len(rows), T), fill, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return torch.from_numpy(out)  # (B, T)


def attention_mask(rows: Sequence[Row]) -> torch.Tensor:
    """(B, T) int64: 1 on each row's tokens, 0 on the padding ``right_padded`` adds."""
    T = max(len(r) for r in rows)
    return (torch.arange(T)[None, :] < torch.tensor([len(r) for r in rows])[:, None]).long()  # (B, T)
