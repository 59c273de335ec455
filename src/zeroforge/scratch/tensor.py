"""Reverse-mode automatic differentiation over NumPy arrays (micrograd's idea at tensor level).

Every operation records its inputs and a ``backward`` closure that maps the gradient of the loss with
respect to the output, dL/dy, to the gradients with respect to the inputs by the chain rule,
dL/dx = dL/dy * dy/dx. ``Tensor.backward`` visits the graph in reverse topological order so each node's
gradient is complete (summed over all its uses) before it is passed on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from zeroforge.errors import ZeroforgeError

ArrayLike = Any
Backward = Callable[[np.ndarray], Sequence["np.ndarray | None"]]

_grad_enabled = True


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Within this block operations record no graph (evaluation, optimiser updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` back to ``shape``: a broadcast input was used once per copy, so its gradient is the sum."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


class Tensor:
    """An n-d array that remembers how it was computed, so ``backward()`` can fill ``.grad``."""

    __array_priority__ = 100  # numpy_array * tensor calls Tensor.__rmul__

    def __init__(self, data: ArrayLike, requires_grad: bool = False, dtype: Any = None) -> None:
        array = np.asarray(data.data if isinstance(data, Tensor) else data, dtype=dtype)
        if not np.issubdtype(array.dtype, np.floating) and dtype is None and requires_grad:
            array = array.astype(np.float64)
        self.data: np.ndarray = array
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Backward | None = None

    # ------------------------------------------------------------------ graph bookkeeping

    @staticmethod
    def _result(data: np.ndarray, parents: tuple[Tensor, ...], backward: Backward) -> Tensor:
        out = Tensor(data)
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = parents
            out._backward = backward
        return out

    def backward(self, grad: ArrayLike | None = None) -> None:
        """Accumulate dself/dleaf into every leaf's ``.grad`` (reverse topological order)."""
        if not self.requires_grad:
            raise ZeroforgeError("backward(): this tensor does not require grad (no parameter led to it)")
        if grad is None:
            if self.data.size != 1:
                raise ZeroforgeError(
                    f"backward(): the tensor has shape {self.shape}; a non-scalar needs an explicit "
                    "gradient of the same shape (backward(grad)), or reduce it first (.sum(), .mean())"
                )
            grad = np.ones_like(self.data)
        grad = np.asarray(grad, dtype=self.data.dtype)
        if grad.shape != self.shape:
            raise ZeroforgeError(f"backward(): gradient shape {grad.shape} != tensor shape {self.shape}")

        order: list[Tensor] = []  # iterative depth-first search: an RNN unrolled far exceeds recursion limits
        seen: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if p.requires_grad and id(p) not in seen)

        grads: dict[int, np.ndarray] = {id(self): grad}
        for node in reversed(order):  # children before parents: each gradient is complete when used
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:  # a leaf: gradients accumulate across backward() calls
                node.grad = g.copy() if node.grad is None else node.grad + g
                continue
            for parent, parent_grad in zip(node._parents, node._backward(g), strict=True):
                if parent_grad is None or not parent.requires_grad:
                    continue
                parent_grad = unbroadcast(parent_grad, parent.shape)
                key = id(parent)
                grads[key] = grads[key] + parent_grad if key in grads else parent_grad

    def zero_grad(self) -> None:
        self.grad = None

    def detach(self) -> Tensor:
        return Tensor(self.data)

    # ------------------------------------------------------------------ array protocol

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return float(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Tensor({self.data!r}, requires_grad={self.requires_grad})"

    def _lift(self, other: ArrayLike) -> Tensor:
        return other if isinstance(other, Tensor) else Tensor(np.asarray(other, dtype=self.data.dtype))

    # ------------------------------------------------------------------ elementwise arithmetic

    def __add__(self, other: ArrayLike) -> Tensor:
        other = self._lift(other)  # y = a + b: dy/da = 1, dy/db = 1
        return Tensor._result(self.data + other.data, (self, other), lambda g: (g, g))

    def __sub__(self, other: ArrayLike) -> Tensor:
        other = self._lift(other)  # y = a - b: dy/da = 1, dy/db = -1
        return Tensor._result(self.data - other.data, (self, other), lambda g: (g, -g))

    def __mul__(self, other: ArrayLike) -> Tensor:
        other = self._lift(other)  # y = a * b: dy/da = b, dy/db = a
        return Tensor._result(
            self.data * other.data, (self, other), lambda g: (g * other.data, g * self.data)
        )

    def __truediv__(self, other: ArrayLike) -> Tensor:
        other = self._lift(other)  # y = a / b: dy/da = 1/b, dy/db = -a/b^2
        a, b = self.data, other.data
        return Tensor._result(a / b, (self, other), lambda g: (g / b, -g * a / (b * b)))

    def __pow__(self, exponent: ArrayLike) -> Tensor:
        exponent = self._lift(exponent)  # y = a^b: dy/da = b a^(b-1), dy/db = a^b ln a
        a, b = self.data, exponent.data
        out = a**b

        def backward(g: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            grad_b = g * out * np.log(np.where(a > 0, a, 1)) if exponent.requires_grad else None
            return g * b * a ** (b - 1), grad_b

        return Tensor._result(out, (self, exponent), backward)

    def __neg__(self) -> Tensor:
        return Tensor._result(-self.data, (self,), lambda g: (-g,))

    def __radd__(self, other: ArrayLike) -> Tensor:
        return self._lift(other) + self

    def __rsub__(self, other: ArrayLike) -> Tensor:
        return self._lift(other) - self

    def __rmul__(self, other: ArrayLike) -> Tensor:
        return self._lift(other) * self

    def __rtruediv__(self, other: ArrayLike) -> Tensor:
        return self._lift(other) / self

    def __matmul__(self, other: ArrayLike) -> Tensor:
        return matmul(self, self._lift(other))

    # ------------------------------------------------------------------ elementwise functions

    def exp(self) -> Tensor:
        out = np.exp(self.data)  # d exp(x)/dx = exp(x)
        return Tensor._result(out, (self,), lambda g: (g * out,))

    def log(self) -> Tensor:
        x = self.data  # d ln(x)/dx = 1/x
        return Tensor._result(np.log(x), (self,), lambda g: (g / x,))

    def tanh(self) -> Tensor:
        out = np.tanh(self.data)  # d tanh(x)/dx = 1 - tanh(x)^2
        return Tensor._result(out, (self,), lambda g: (g * (1 - out * out),))

    def sigmoid(self) -> Tensor:
        # sigma(x) = 1 / (1 + e^-x), written as (1 + tanh(x/2)) / 2 so no exp overflows
        out = 0.5 * (1 + np.tanh(0.5 * self.data))  # d sigma/dx = sigma (1 - sigma)
        return Tensor._result(out, (self,), lambda g: (g * out * (1 - out),))

    def relu(self) -> Tensor:
        mask = self.data > 0  # d max(0, x)/dx = 1 if x > 0 else 0
        return Tensor._result(self.data * mask, (self,), lambda g: (g * mask,))

    def sqrt(self) -> Tensor:
        return self**0.5

    # ------------------------------------------------------------------ reductions

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        shape = self.shape  # y = sum_i x_i: dy/dx_i = 1, so the gradient is broadcast back

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            if not keepdims and axis is not None:
                g = np.expand_dims(g, axis)
            return (np.broadcast_to(g, shape),)

        return Tensor._result(self.data.sum(axis=axis, keepdims=keepdims), (self,), backward)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        axes = range(self.ndim) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
        count = int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axis, keepdims) * (1.0 / count)  # mean = sum / n: dy/dx_i = 1/n

    def max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        out = self.data.max(axis=axis, keepdims=True)
        # dy/dx_i = 1 where x_i is the maximum (shared equally between ties, as torch.amax), else 0
        mask = self.data == out
        share = mask / mask.sum(axis=axis, keepdims=True)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            if not keepdims and axis is not None:
                g = np.expand_dims(g, axis)
            return (g * share,)

        data = out if keepdims else (out.squeeze(axis) if axis is not None else out.reshape(()))
        return Tensor._result(data, (self,), backward)

    # ------------------------------------------------------------------ shape

    def reshape(self, *shape: int | tuple[int, ...]) -> Tensor:
        target = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape
        old = self.shape  # a view: the gradient is reshaped back
        return Tensor._result(self.data.reshape(target), (self,), lambda g: (g.reshape(old),))

    def transpose(self, *axes: int) -> Tensor:
        order = axes if axes else tuple(reversed(range(self.ndim)))
        inverse = np.argsort(order)  # the gradient is permuted by the inverse permutation
        return Tensor._result(self.data.transpose(order), (self,), lambda g: (g.transpose(inverse),))

    def swapaxes(self, a: int, b: int) -> Tensor:
        order = list(range(self.ndim))
        order[a], order[b] = order[b], order[a]
        return self.transpose(*order)

    @property
    def T(self) -> Tensor:  # noqa: N802 - numpy's name
        return self.transpose()

    def __getitem__(self, index: Any) -> Tensor:
        index = index.data if isinstance(index, Tensor) else index
        shape, dtype = self.shape, self.data.dtype

        parts = index if isinstance(index, tuple) else (index,)
        basic = all(isinstance(p, int | slice | None | type(Ellipsis)) for p in parts)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            grad = np.zeros(shape, dtype=dtype)
            if basic:  # slices and integers select each element at most once
                grad[index] = g
            else:
                np.add.at(grad, index, g)  # a repeated index receives the sum of its gradients
            return (grad,)

        return Tensor._result(self.data[index], (self,), backward)

    def gather(self, axis: int, index: np.ndarray) -> Tensor:
        """out[..., j, ...] = self[..., index[..., j, ...], ...] along ``axis`` (torch.gather)."""
        index = np.asarray(index.data if isinstance(index, Tensor) else index)
        shape, dtype = self.shape, self.data.dtype

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            grad = np.zeros(shape, dtype=dtype)
            # scatter-add: position index[..., j, ...] along ``axis`` receives g[..., j, ...]
            full = np.indices(index.shape, sparse=True)
            where = tuple(index if d == axis % len(shape) else full[d] for d in range(len(shape)))
            np.add.at(grad, where, g)
            return (grad,)

        return Tensor._result(np.take_along_axis(self.data, index, axis), (self,), backward)


def tensor(data: ArrayLike, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Y = A B (batched, broadcasting): dL/dA = dL/dY B^T, dL/dB = A^T dL/dY."""
    if a.ndim == 0 or b.ndim == 0:
        raise ZeroforgeError(f"matmul: operands must have at least 1 dimension, got {a.shape} @ {b.shape}")
    inner_a, inner_b = a.shape[-1], b.shape[0] if b.ndim == 1 else b.shape[-2]
    if inner_a != inner_b:
        raise ZeroforgeError(
            f"matmul: shapes {a.shape} @ {b.shape} do not fit (inner dimensions {inner_a} != {inner_b})"
        )
    a2 = a.data[None, :] if a.ndim == 1 else a.data  # vectors as a row / a column, squeezed afterwards
    b2 = b.data[:, None] if b.ndim == 1 else b.data
    out = a2 @ b2

    def backward(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = g.reshape(out.shape)
        grad_a = unbroadcast(g @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if b2.ndim == 2 and a2.ndim > 2:  # a shared weight: fold the batch into one matmul, sum_i x_i^T g_i
            grad_b = (a2.reshape(-1, a2.shape[-1]).T @ g.reshape(-1, g.shape[-1])).reshape(b.shape)
        else:
            grad_b = unbroadcast(np.swapaxes(a2, -1, -2) @ g, b2.shape).reshape(b.shape)
        return grad_a, grad_b

    if a.ndim == 1:
        out_shape = out.shape[:-2] + out.shape[-1:]
        out_shape = out_shape if b.ndim > 1 else ()
    elif b.ndim == 1:
        out_shape = out.shape[:-1]
    else:
        out_shape = out.shape
    return Tensor._result(out.reshape(out_shape), (a, b), backward)


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join along ``axis``: the gradient is split back at the same boundaries."""
    boundaries = np.cumsum([t.shape[axis] for t in tensors])[:-1]
    data = np.concatenate([t.data for t in tensors], axis=axis)
    return Tensor._result(data, tuple(tensors), lambda g: tuple(np.split(g, boundaries, axis=axis)))


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Stack along a new ``axis``: the gradient is unstacked."""
    data = np.stack([t.data for t in tensors], axis=axis)
    n = len(tensors)
    return Tensor._result(
        data, tuple(tensors), lambda g: tuple(np.squeeze(p, axis) for p in np.split(g, n, axis=axis))
    )


def where(condition: np.ndarray, a: Tensor, b: Tensor | float) -> Tensor:
    """condition ? a : b; the gradient flows to the branch that was chosen."""
    b = a._lift(b)
    cond = np.asarray(condition, dtype=bool)
    return Tensor._result(
        np.where(cond, a.data, b.data), (a, b), lambda g: (np.where(cond, g, 0), np.where(cond, 0, g))
    )
