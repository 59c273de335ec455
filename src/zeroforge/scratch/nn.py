"""Layers built from ``Tensor`` ops, and the initialisers that give them their starting weights."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

import zeroforge.scratch.functional as F
from zeroforge.errors import ZeroforgeError
from zeroforge.scratch.tensor import Tensor, stack

# ----------------------------------------------------------------------------- initialisers


def normal(shape: tuple[int, ...], std: float, rng: np.random.Generator, dtype: type = np.float64) -> Tensor:
    """w ~ N(0, std^2)."""
    return Tensor(rng.normal(0.0, std, shape).astype(dtype), requires_grad=True)


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1  # conv kernels: (out, in, kh, kw)
    return shape[1] * receptive, shape[0] * receptive


def xavier_uniform(shape: tuple[int, ...], rng: np.random.Generator, dtype: type = np.float64) -> Tensor:
    """Xavier/Glorot (2010): w ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)), so Var(w) = 2 / (fan_in + fan_out)."""
    fan_in, fan_out = _fans(shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return Tensor(rng.uniform(-bound, bound, shape).astype(dtype), requires_grad=True)


def xavier_normal(shape: tuple[int, ...], rng: np.random.Generator, dtype: type = np.float64) -> Tensor:
    """Xavier/Glorot normal: w ~ N(0, 2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    return normal(shape, math.sqrt(2.0 / (fan_in + fan_out)), rng, dtype)


def he_normal(shape: tuple[int, ...], rng: np.random.Generator, dtype: type = np.float64) -> Tensor:
    """He/Kaiming (2015) for ReLU: w ~ N(0, 2 / fan_in), which keeps activations' variance through depth."""
    fan_in, _ = _fans(shape)
    return normal(shape, math.sqrt(2.0 / fan_in), rng, dtype)


def uniform_fan_in(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator, dtype: type) -> Tensor:
    """w ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn.Linear / Conv2d's default."""
    bound = 1.0 / math.sqrt(fan_in)
    return Tensor(rng.uniform(-bound, bound, shape).astype(dtype), requires_grad=True)


# ----------------------------------------------------------------------------- modules


class Module:
    """A callable holding parameters: every ``Tensor`` attribute with ``requires_grad``, and sub-modules."""

    training = True

    def forward(self, *args: object) -> Tensor:
        raise NotImplementedError

    def __call__(self, *args: object) -> Tensor:
        return self.forward(*args)

    def parameters(self) -> Iterator[Tensor]:
        for value in vars(self).values():
            items = value if isinstance(value, list | tuple) else [value]
            for item in items:
                if isinstance(item, Tensor) and item.requires_grad:
                    yield item
                elif isinstance(item, Module):
                    yield from item.parameters()

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def num_parameters(self) -> int:
        return sum(p.data.size for p in self.parameters())


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng(0)


class Linear(Module):
    """y = x W^T + b, x (..., in) -> (..., out); W (out, in) as torch.nn.Linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 rng: np.random.Generator | None = None, dtype: type = np.float64) -> None:  # fmt: skip
        rng = _rng(rng)
        self.weight = uniform_fan_in((out_features, in_features), in_features, rng, dtype)
        self.bias = uniform_fan_in((out_features,), in_features, rng, dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y


class Sequential(Module):
    def __init__(self, *layers: Module) -> None:
        self.layers = list(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class Activation(Module):
    """An activation function as a layer: ``Activation(F.relu)``."""

    def __init__(self, function: object) -> None:
        self.function = function

    def forward(self, x: Tensor) -> Tensor:
        return self.function(x)  # type: ignore[operator]


class Flatten(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)


class Conv2d(Module):
    """2-d convolution (im2col, see ``functional.conv2d``); weight (out, in, k, k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 rng: np.random.Generator | None = None, dtype: type = np.float64) -> None:  # fmt: skip
        rng = _rng(rng)
        fan_in = in_channels * kernel_size * kernel_size
        self.weight = uniform_fan_in(
            (out_channels, in_channels, kernel_size, kernel_size), fan_in, rng, dtype
        )
        self.bias = uniform_fan_in((out_channels,), fan_in, rng, dtype)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class MaxPool2d(Module):
    def __init__(self, kernel_size: int = 2, stride: int | None = None) -> None:
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride)


class LayerNorm(Module):
    def __init__(self, dim: int, eps: float = 1e-5, dtype: type = np.float64) -> None:
        self.weight = Tensor(np.ones(dim, dtype=dtype), requires_grad=True)
        self.bias = Tensor(np.zeros(dim, dtype=dtype), requires_grad=True)
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class Embedding(Module):
    """A lookup table: row ``i`` of the weight is token ``i``'s vector; its gradient is scatter-added."""

    def __init__(self, num_embeddings: int, dim: int, rng: np.random.Generator | None = None,
                 dtype: type = np.float64) -> None:  # fmt: skip
        self.weight = normal((num_embeddings, dim), 1.0, _rng(rng), dtype)

    def forward(self, ids: np.ndarray) -> Tensor:
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.weight.shape[0]):
            raise ZeroforgeError(
                f"Embedding: ids must lie in [0, {self.weight.shape[0]}), got {ids.min()}..{ids.max()}"
            )
        return self.weight[ids]


class RNNCell(Module):
    """Elman cell: h_t = tanh(W x_t + U h_{t-1} + b); W (hidden, in), U (hidden, hidden)."""

    def __init__(self, input_size: int, hidden_size: int, rng: np.random.Generator | None = None,
                 dtype: type = np.float64) -> None:  # fmt: skip
        rng = _rng(rng)
        self.W = uniform_fan_in((hidden_size, input_size), hidden_size, rng, dtype)  # noqa: N815 - the formula's name
        self.U = uniform_fan_in((hidden_size, hidden_size), hidden_size, rng, dtype)  # noqa: N815
        self.b = uniform_fan_in((hidden_size,), hidden_size, rng, dtype)
        self.hidden_size = hidden_size

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return (x @ self.W.T + h @ self.U.T + self.b).tanh()


class RNN(Module):
    """The cell unrolled through time: x (B, T, in) -> hidden states (B, T, hidden).

    Backpropagation through time is the ordinary backward over the unrolled graph: U's gradient is the
    sum of its gradients at every step.
    """

    def __init__(self, input_size: int, hidden_size: int, rng: np.random.Generator | None = None,
                 dtype: type = np.float64) -> None:  # fmt: skip
        self.cell = RNNCell(input_size, hidden_size, rng, dtype)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> Tensor:
        h = h0 if h0 is not None else Tensor(np.zeros((x.shape[0], self.cell.hidden_size), dtype=x.dtype))
        states = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            states.append(h)
        return stack(states, axis=1)


class CausalSelfAttention(Module):
    """Multi-head self-attention with a causal mask: softmax(Q K^T / sqrt(d_k) + M) V (Vaswani et al., 2017).

    x (B, T, C) -> (B, T, C); M is -inf above the diagonal so position t attends to positions <= t.
    """

    def __init__(self, dim: int, num_heads: int, rng: np.random.Generator | None = None,
                 dtype: type = np.float64) -> None:  # fmt: skip
        if dim % num_heads:
            raise ZeroforgeError(f"CausalSelfAttention: dim {dim} is not divisible by num_heads {num_heads}")
        rng = _rng(rng)
        self.qkv = Linear(dim, 3 * dim, rng=rng, dtype=dtype)
        self.proj = Linear(dim, dim, rng=rng, dtype=dtype)
        self.num_heads = num_heads

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        nh, hs = self.num_heads, c // self.num_heads
        qkv = self.qkv(x).reshape(b, t, 3, nh, hs).transpose(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
        mask = np.triu(np.full((t, t), -np.inf, dtype=x.dtype), k=1)
        weights = F.softmax(scores + mask, axis=-1)
        out = (weights @ v).transpose(0, 2, 1, 3).reshape(b, t, c)  # (B, T, nh, hs) -> (B, T, C)
        return self.proj(out)


class MLPBlock(Module):
    """Position-wise feed-forward: GELU(x W1^T + b1) W2^T + b2, hidden width 4 * dim."""

    def __init__(self, dim: int, rng: np.random.Generator, dtype: type = np.float64) -> None:
        self.fc = Linear(dim, 4 * dim, rng=rng, dtype=dtype)
        self.proj = Linear(4 * dim, dim, rng=rng, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))


class TransformerBlock(Module):
    """Pre-norm block: x + attn(LN(x)), then x + mlp(LN(x)) (GPT-2)."""

    def __init__(self, dim: int, num_heads: int, rng: np.random.Generator, dtype: type = np.float64) -> None:
        self.ln1, self.ln2 = LayerNorm(dim, dtype=dtype), LayerNorm(dim, dtype=dtype)
        self.attn = CausalSelfAttention(dim, num_heads, rng, dtype)
        self.mlp = MLPBlock(dim, rng, dtype)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))
