"""The transformer's position-wise feed-forward network: c_proj(act(c_fc(x))), then dropout."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["gelu_tanh", "gelu", "relu"]


class GELUTanh(nn.Module):
    """GPT-2's GELU, 0.5x(1 + tanh(u)) with u = sqrt(2/pi)(x + 0.044715x^3) (Hendrycks & Gimpel 2016).

    Eager: torch's fused kernel. Under ``torch.compile`` the same function is written as
    x * sigmoid(2u), since 0.5(1 + tanh(u)) = sigmoid(2u): inductor's CPU code computes sigmoid from
    one vectorised exp: at (1024, 1024) fp32 on one thread the forward is 3x and forward + backward
    2.3x faster than with its tanh. The two forms differ by float rounding (about 5e-7 in fp32). Inductor computes bf16 inputs in fp32 and
    rounds once, as the fused kernel does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            return F.gelu(x, approximate="tanh")
        return x * torch.sigmoid(2.0 * math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x))


def _fused_activation(name: Activation) -> nn.Module:
    """torch's fused kernels (modules/activations.py writes the formulas out, for teaching).

    ``gelu_tanh`` is GPT-2's 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))); ``gelu`` is exact (BERT).
    """
    if name == "gelu_tanh":
        return GELUTanh()
    if name == "gelu":
        return nn.GELU()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"activation: expected gelu_tanh, gelu or relu, got {name!r}")


class MLP(nn.Module):
    """Two Linear layers with a non-linearity between them (hidden width usually 4 * n_embd).

    The names ``c_fc``/``c_proj`` follow GPT-2 so its checkpoints map onto this module one to one.
    """

    def __init__(
        self,
        n_embd: int,
        hidden: int,
        bias: bool = True,
        dropout: float = 0.0,
        activation: Activation = "gelu_tanh",
    ) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.act = _fused_activation(activation)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))  # (B, T, C)
