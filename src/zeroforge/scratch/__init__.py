"""Backpropagation from first principles: a small reverse-mode autodiff engine over NumPy arrays.

``Tensor`` records every operation and its textbook derivative; ``Tensor.backward`` applies the chain
rule in reverse topological order. ``functional`` and ``nn`` build layers and losses from it, ``optim``
writes SGD, momentum and Adam as their update formulas. NumPy only: importing this package never
imports torch (the tests compare every gradient with torch.autograd's).

    from zeroforge.scratch import Tensor
    x = Tensor([[1.0, 2.0]], requires_grad=True)
    (x * x).sum().backward()        # x.grad == 2 x
"""

from zeroforge.scratch import functional, nn, optim
from zeroforge.scratch.tensor import Tensor, concatenate, matmul, no_grad, stack, tensor, where

__all__ = [
    "Tensor",
    "concatenate",
    "functional",
    "matmul",
    "nn",
    "no_grad",
    "optim",
    "stack",
    "tensor",
    "where",
]
