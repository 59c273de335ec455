"""The classic activation functions f in y = f(Wx + b), written out as formulas.

Each function is the textbook formula in a numerically safe form; the tests compare every one with
``torch.nn.functional``. ``make_activation(name)`` turns a config string into a module.

  sigmoid      σ(x) = 1 / (1 + e^-x)
  tanh         tanh(x) = (e^x - e^-x) / (e^x + e^-x) = 2σ(2x) - 1
  relu         max(0, x)
  leaky_relu   max(0, x) + α·min(0, x)          (α = 0.01 by default, Maas et al. 2013)
  gelu         x·Φ(x) = 0.5x(1 + erf(x / √2))   (Hendrycks & Gimpel 2016)
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

ActivationName = Literal["sigmoid", "tanh", "relu", "leaky_relu", "gelu"]
ACTIVATIONS: tuple[str, ...] = get_args(ActivationName)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """1 / (1 + e^-x) for x >= 0 and the equal e^x / (1 + e^x) for x < 0: each branch only ever
    exponentiates a non-positive number, so nothing overflows and no gradient becomes inf * 0 = NaN."""
    e_neg = torch.exp(-x.clamp_min(0.0))  # e^-x on the x >= 0 branch, in (0, 1]
    e_pos = torch.exp(x.clamp_max(0.0))  # e^x on the x < 0 branch, in (0, 1]
    return torch.where(x >= 0, 1.0 / (1.0 + e_neg), e_pos / (1.0 + e_pos))


def tanh(x: torch.Tensor) -> torch.Tensor:
    """(e^x - e^-x) / (e^x + e^-x) = (e^2x - 1) / (e^2x + 1), evaluated on e^(-2|x|) so it never overflows;
    expm1 keeps full precision near 0, where e^2x - 1 would cancel."""
    a = torch.expm1(2.0 * x.clamp_max(0.0))  # e^2x - 1 on the x <= 0 branch, in (-1, 0]
    b = torch.expm1(-2.0 * x.clamp_min(0.0))  # e^-2x - 1 on the x > 0 branch, in (-1, 0]
    return torch.where(x > 0, -b / (b + 2.0), a / (a + 2.0))


def relu(x: torch.Tensor) -> torch.Tensor:
    """max(0, x); the gradient at exactly 0 is taken as 0, as torch does."""
    return torch.where(x > 0, x, torch.zeros_like(x))


def leaky_relu(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """x for x > 0, α·x otherwise: a small slope α keeps gradients flowing through units that are off."""
    return torch.where(x > 0, x, negative_slope * x)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """x·Φ(x) with Φ the standard normal CDF: 0.5x(1 + erf(x/√2)) (exact, not the tanh approximation).

    Written with erfc(-x/√2) = 1 + erf(x/√2), which does not cancel to 0 for negative x.
    """
    return 0.5 * x * torch.erfc(x * (-1.0 / math.sqrt(2.0)))


_FUNCTIONS = {"sigmoid": sigmoid, "tanh": tanh, "relu": relu, "gelu": gelu}


class Activation(nn.Module):
    """One of the activations above as a module (so it shows in ``print(model)``)."""

    def __init__(self, name: ActivationName, negative_slope: float = 0.01) -> None:
        super().__init__()
        if name not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {name!r}")
        self.name = name
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.name == "leaky_relu":
            return leaky_relu(x, self.negative_slope)
        return _FUNCTIONS[self.name](x)

    def extra_repr(self) -> str:
        return self.name + (f", negative_slope={self.negative_slope}" if self.name == "leaky_relu" else "")


def make_activation(name: ActivationName, negative_slope: float = 0.01) -> Activation:
    """``make_activation("relu")`` -> a module; unknown names raise ValueError listing the choices."""
    return Activation(name, negative_slope)
