"""Activations, losses, convolution and normalisation as functions of ``Tensor``s.

Where a composite of the basic ops would be slow or numerically fragile (softmax, cross-entropy,
im2col convolution, max-pooling, layer norm, GELU) the function is one node with its own textbook
backward, written next to the forward formula.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from zeroforge.errors import ZeroforgeError
from zeroforge.scratch.tensor import Tensor, where

# ----------------------------------------------------------------------------- activations


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def relu(x: Tensor) -> Tensor:
    return x.relu()


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    # f(x) = x if x > 0 else a x;  f'(x) = 1 if x > 0 else a
    return where(x.data > 0, x, x * negative_slope)


_GELU_C = math.sqrt(2.0 / math.pi)


_erf = np.vectorize(math.erf, otypes=[np.float64])  # exact to double precision; NumPy has no erf


def gelu(x: Tensor, approximate: str = "tanh") -> Tensor:
    """GELU (Hendrycks & Gimpel, 2016): x Phi(x), Phi the standard normal CDF.

    ``approximate="tanh"`` (GPT-2's, fast): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
    ``approximate="none"``: 0.5 x (1 + erf(x / sqrt(2))), d/dx = Phi(x) + x phi(x).
    """
    a = x.data
    if approximate == "none":
        cdf = (0.5 * (1 + _erf(a / math.sqrt(2.0)))).astype(a.dtype)
        pdf = np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
        return Tensor._result(a * cdf, (x,), lambda g: (g * (cdf + a * pdf),))
    if approximate != "tanh":
        raise ZeroforgeError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")
    inner = _GELU_C * (a + 0.044715 * (a * a * a))  # a * a * a: np.power is slow
    t = np.tanh(inner)

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        # d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
        return (g * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * a * a)),)

    return Tensor._result(0.5 * a * (1 + t), (x,), backward)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """softmax(x)_i = e^(x_i - max x) / sum_j e^(x_j - max x); subtracting the max changes nothing but overflow."""
    e = np.exp(x.data - x.data.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    # Jacobian dy_i/dx_j = y_i (delta_ij - y_j), so dL/dx = y * (g - sum_j g_j y_j)
    return Tensor._result(y, (x,), lambda g: (y * (g - (g * y).sum(axis=axis, keepdims=True)),))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log softmax(x) = x - logsumexp(x), with logsumexp(x) = m + log sum e^(x - m), m = max x."""
    shifted = x.data - x.data.max(axis=axis, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    # d/dx_j = delta_ij - softmax_j, so dL/dx = g - softmax * sum(g)
    return Tensor._result(out, (x,), lambda g: (g - np.exp(out) * g.sum(axis=axis, keepdims=True),))


# ----------------------------------------------------------------------------- losses


def cross_entropy(logits: Tensor, targets: np.ndarray) -> Tensor:
    """Mean of -log softmax(z)[y] over rows; logits (N, C) or (..., C), integer targets of the leading shape.

    The gradient is the textbook (softmax(z) - onehot(y)) / N, computed from the shifted logits so it
    stays finite for any logit size.
    """
    targets = np.asarray(targets)
    if logits.shape[:-1] != targets.shape:
        raise ZeroforgeError(
            f"cross_entropy: logits {logits.shape} need targets of shape {logits.shape[:-1]}"
        )
    z = logits.data.reshape(-1, logits.shape[-1])
    y = targets.reshape(-1)
    shifted = z - z.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    loss = -log_probs[rows, y].mean()

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        grad = np.exp(log_probs)
        grad[rows, y] -= 1
        return ((g / len(y)) * grad.reshape(logits.shape),)

    return Tensor._result(np.asarray(loss, dtype=z.dtype), (logits,), backward)


def mse_loss(prediction: Tensor, target: Tensor | np.ndarray) -> Tensor:
    """Mean squared error (1/n) sum (y_hat - y)^2; d/dy_hat = 2 (y_hat - y) / n by the chain rule."""
    diff = prediction - target
    return (diff * diff).mean()


def binary_cross_entropy(probability: Tensor, target: Tensor | np.ndarray) -> Tensor:
    """-(1/n) sum [y log p + (1 - y) log(1 - p)] for probabilities p in (0, 1)."""
    return -(target * probability.log() + (1 - Tensor(target)) * (1 - probability).log()).mean()


def binary_cross_entropy_with_logits(logits: Tensor, target: np.ndarray) -> Tensor:
    """BCE of sigma(z), written stably: max(z, 0) - z y + log(1 + e^-|z|); d/dz = sigma(z) - y."""
    z, y = logits.data, np.asarray(target, dtype=logits.dtype)
    loss = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).mean()
    prob = 0.5 * (1 + np.tanh(0.5 * z))
    return Tensor._result(np.asarray(loss), (logits,), lambda g: (g * (prob - y) / z.size,))


def hinge_loss(scores: Tensor, target: np.ndarray) -> Tensor:
    """SVM hinge loss (1/n) sum max(0, 1 - y s) with y in {-1, +1}; d/ds = -y where the margin is < 1."""
    return (1 - scores * np.asarray(target, dtype=scores.dtype)).relu().mean()


# ----------------------------------------------------------------------------- convolution and pooling


def conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1, padding: int = 0
) -> Tensor:
    """2-d cross-correlation by im2col: every receptive field becomes a row, the convolution a matmul.

    x (N, C, H, W), weight (F, C, kh, kw), bias (F,) -> (N, F, OH, OW), OH = (H + 2p - kh) / s + 1.
    """
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ZeroforgeError(
            f"conv2d: input {x.shape} and weight {weight.shape} need (N, C, H, W), (F, C, kh, kw)"
        )
    n, c, _, _ = x.shape
    f, _, kh, kw = weight.shape
    padded = np.pad(x.data, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x.data
    windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))[
        :, :, ::stride, ::stride
    ]  # (N,C,OH,OW,kh,kw)
    oh, ow = windows.shape[2], windows.shape[3]
    cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)  # im2col
    w_rows = weight.data.reshape(f, -1)
    out = cols @ w_rows.T  # (N*OH*OW, F)
    if bias is not None:
        out += bias.data
    out = out.reshape(n, oh, ow, f).transpose(0, 3, 1, 2)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        g_rows = g.transpose(0, 2, 3, 1).reshape(-1, f)
        grad_w = (g_rows.T @ cols).reshape(weight.shape)  # dL/dW = dL/dY^T cols
        grad_b = g_rows.sum(axis=0) if bias is not None else None  # dL/db = sum over positions
        if not x.requires_grad:  # the first layer's input: no col2im needed
            return None, grad_w, grad_b
        grad_cols = (g_rows @ w_rows).reshape(n, oh, ow, c, kh, kw)  # dL/dcols = dL/dY W
        grad_padded = np.zeros(padded.shape, dtype=padded.dtype)
        for i in range(kh):  # col2im: each kernel offset adds its slice back where it was read
            for j in range(kw):
                grad_padded[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride] += grad_cols[
                    :, :, :, :, i, j
                ].transpose(0, 3, 1, 2)
        grad_x = grad_padded[:, :, padding : padded.shape[2] - padding, padding : padded.shape[3] - padding]
        return grad_x, grad_w, grad_b

    parents = (x, weight) + ((bias,) if bias is not None else (Tensor(0.0),))
    return Tensor._result(np.ascontiguousarray(out), parents, backward)


def max_pool2d(x: Tensor, kernel_size: int = 2, stride: int | None = None) -> Tensor:
    """y = max over each k x k window; dL/dx is dL/dy at the window's (first) maximum and 0 elsewhere."""
    k, s = kernel_size, stride or kernel_size
    windows = sliding_window_view(x.data, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # (N, C, OH, OW, k, k)
    flat = windows.reshape(*windows.shape[:4], k * k)
    winner = flat.argmax(axis=-1)  # (N, C, OH, OW)
    out = np.take_along_axis(flat, winner[..., None], axis=-1)[..., 0]
    oh, ow = out.shape[2], out.shape[3]

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        grad = np.zeros(x.shape, dtype=x.dtype)
        for i in range(k):
            for j in range(k):
                grad[:, :, i : i + s * oh : s, j : j + s * ow : s] += g * (winner == i * k + j)
        return (grad,)

    return Tensor._result(out, (x,), backward)


# ----------------------------------------------------------------------------- normalisation


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """LayerNorm over the last axis: gamma * (x - mu) / sqrt(var + eps) + beta (Ba et al., 2016)."""
    mu = x.data.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(x.data.var(axis=-1, keepdims=True) + eps)
    x_hat = (x.data - mu) * rstd
    d = x.shape[-1]

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        # dL/dx = rstd / d * (d g - sum g - x_hat sum(g x_hat)), the normalisation's chain rule through mu, var
        return (rstd / d * (d * g - g.sum(-1, keepdims=True) - x_hat * (g * x_hat).sum(-1, keepdims=True)),)

    normalised = Tensor._result(x_hat, (x,), backward)
    return normalised * weight + bias
