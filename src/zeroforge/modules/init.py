"""Weight initialisation schemes and the variance each one gives a weight matrix.

For a weight with fan_in inputs and fan_out outputs per unit (a conv kernel counts its receptive field:
fan_in = in_channels/groups * kh * kw, fan_out = out_channels * kh * kw, as torch computes it):

  normal          w ~ N(0, σ²)                                   Var = σ²            (σ = 0.01 by default)
  uniform         w ~ U(-a, a)                                   Var = a² / 3        (a = 0.05 by default)
  xavier_normal   w ~ N(0, 2 / (fan_in + fan_out))               Var = 2 / (fan_in + fan_out)
  xavier_uniform  w ~ U(±√(6 / (fan_in + fan_out)))              Var = 2 / (fan_in + fan_out)
                  (Glorot & Bengio 2010: keeps the variance of activations and of gradients for tanh nets)
  he_normal       w ~ N(0, g / fan_in)                           Var = g / fan_in
  he_uniform      w ~ U(±√(3g / fan_in))                         Var = g / fan_in
                  (He et al. 2015: g = 2 / (1 + α²) makes up for ReLU zeroing half its inputs; α is the
                  leaky-ReLU slope, 0 for ReLU)

Biases start at 0. ``default`` leaves torch's own initialisation (Kaiming-uniform with a = √5) in place.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

InitName = Literal[
    "default", "normal", "uniform", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform"
]
INITS: tuple[str, ...] = get_args(InitName)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a Linear (out, in) or conv (out, in/groups, *kernel) weight."""
    if weight.dim() < 2:
        raise ValueError(f"fans: need a weight with at least 2 dimensions, got shape {tuple(weight.shape)}")
    receptive_field = math.prod(weight.shape[2:])  # 1 for Linear
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


def he_gain(negative_slope: float = 0.0) -> float:
    """g = 2 / (1 + α²): the variance factor of He init for a (leaky) ReLU with slope α."""
    return 2.0 / (1.0 + negative_slope**2)


def expected_variance(
    scheme: InitName,
    fan_in: int,
    fan_out: int,
    std: float = 0.01,
    bound: float = 0.05,
    negative_slope: float = 0.0,
) -> float:
    """The variance ``init_weight_`` gives each entry (the table in the module docstring)."""
    if scheme == "normal":
        return std**2
    if scheme == "uniform":
        return bound**2 / 3.0
    if scheme in ("xavier_normal", "xavier_uniform"):
        return 2.0 / (fan_in + fan_out)
    if scheme in ("he_normal", "he_uniform"):
        return he_gain(negative_slope) / fan_in
    raise ValueError(f"init: no fixed variance for {scheme!r} (expected one of {', '.join(INITS[1:])})")


@torch.no_grad()
def init_weight_(
    weight: torch.Tensor,
    scheme: InitName,
    std: float = 0.01,
    bound: float = 0.05,
    negative_slope: float = 0.0,
) -> torch.Tensor:
    """Fill ``weight`` in place with the scheme's distribution; returns it."""
    if scheme == "default":
        return weight
    fan_in, fan_out = fans(weight)
    var = expected_variance(scheme, fan_in, fan_out, std, bound, negative_slope)
    if scheme in ("normal", "xavier_normal", "he_normal"):
        return weight.normal_(0.0, math.sqrt(var))
    # U(-a, a) has variance a² / 3, so a = √(3 Var)
    a = math.sqrt(3.0 * var)
    return weight.uniform_(-a, a)


def init_weights(
    module: nn.Module,
    scheme: InitName,
    std: float = 0.01,
    bound: float = 0.05,
    negative_slope: float = 0.0,
) -> nn.Module:
    """Apply ``scheme`` to every Linear and Conv weight in ``module`` and zero their biases.

    Norm layers, embeddings and recurrent weights keep their own initialisation.
    """
    if scheme not in INITS:
        raise ValueError(f"init: expected one of {', '.join(INITS)}, got {scheme!r}")
    if scheme == "default":
        return module
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            init_weight_(layer.weight, scheme, std, bound, negative_slope)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def normal_init_(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2's and BERT's initialiser, for ``model.apply``: N(0, std) for Linear and Embedding weights
    (std is HF's ``initializer_range``, 0.02 in both), zero biases, LayerNorm gain 1 and bias 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def sinusoidal_positions(n_positions: int, dim: int) -> torch.Tensor:
    """The Transformer's position encoding (Vaswani et al. 2017, section 3.5) -> (n_positions, dim):
    PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)).
    PE(p) . PE(q) = sum_i cos((p - q) / 10000^(2i/d)): largest at p = q, falling with |p - q|."""
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (ceil(d/2),)
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table.float()
