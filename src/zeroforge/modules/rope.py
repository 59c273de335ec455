"""Rotary position embeddings (RoPE, Su et al. 2021, "RoFormer").

Position m rotates each pair of query/key features (x_i, x_{i+d/2}) by the angle m * theta_i, with
theta_i = base^(-2i/d). Rotating q by m and k by n makes q.k depend on m - n only: attention sees
relative positions, and nothing is added to the token embeddings.

The pairs are (i, i + d/2) ("rotate half", GPT-NeoX and Hugging Face's Llama layout), not the
interleaved (2i, 2i+1) of the paper; llama.cpp stores q/k weights permuted for the interleaved
layout, which ``zeroforge.weights.gguf`` undoes on load.
"""

from __future__ import annotations

import torch
from torch import nn


def inverse_frequencies(head_dim: int, base: float) -> torch.Tensor:
    """theta_i = base^(-2i/d) for i = 0 .. d/2 - 1, in fp32 (head_dim / 2,)."""
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


class RotaryEmbedding(nn.Module):
    """``forward(positions, dtype) -> (cos, sin)``, each (B|1, T, head_dim), for ``apply_rotary``.

    Angles are computed in fp32 from the integer positions (exact products, as Hugging Face does)
    and only the cos/sin are cast to the activations' dtype.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head_dim: rotary embeddings need an even head size, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        self.register_buffer("inv_freq", inverse_frequencies(head_dim, base), persistent=False)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # model.to(torch.bfloat16) casts buffers too; the frequencies must stay fp32 (a bf16 theta_i
        # would shift every angle), so they are recomputed on whatever device the module went to.
        super()._apply(fn, recurse)
        self.inv_freq = inverse_frequencies(self.head_dim, self.base).to(self.inv_freq.device)
        return self

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions[..., None].float() * self.inv_freq  # (B|1, T, hs/2): m * theta_i
        angles = torch.cat((angles, angles), dim=-1)  # (B|1, T, hs): pair i and i + hs/2 share an angle
        return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension: a 90 degree turn of each pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate heads x (B, nh, T, hs) by their positions' angles; cos, sin (B|1, T, hs) from ``RotaryEmbedding``.

    Each pair (a, b) becomes (a cos - b sin, b cos + a sin), a 2-D rotation.
    """
    return x * cos[:, None] + rotate_half(x) * sin[:, None]  # (B, nh, T, hs)
