"""RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * g.

LayerNorm without the mean subtraction and the bias: cheaper, and what Llama-family models use.
The statistic is computed in fp32 whatever the input dtype and the result is cast back before the
gain is applied, exactly as Hugging Face's ``LlamaRMSNorm``, so bf16 outputs match bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Normalise the last dimension by its root mean square; ``weight`` is the learned gain g (init 1)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)  # (..., dim), unit RMS
        return self.weight * h.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"
