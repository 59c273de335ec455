"""Compare a scratch computation with the same one in torch.autograd and with central finite differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from zeroforge.scratch import Tensor

TOL = 1e-6  # float64: scratch and torch agree to rounding


def _weights(shape: tuple[int, ...], seed: int = 123) -> np.ndarray:
    """Random output weights: loss = sum(w * y) makes every output element matter to the gradient."""
    return np.random.default_rng(seed).normal(size=shape)


def assert_grads_match_torch(
    scratch_fn: Callable[..., Tensor],
    torch_fn: Callable[..., torch.Tensor],
    arrays: Sequence[np.ndarray],
    tol: float = TOL,
) -> list[np.ndarray]:
    """Same function, same float64 inputs: outputs and input gradients equal within ``tol``."""
    ours = [Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    y = scratch_fn(*ours)
    y_ref = torch_fn(*theirs)
    assert y.shape == tuple(y_ref.shape), f"output shape {y.shape} != torch {tuple(y_ref.shape)}"
    np.testing.assert_allclose(y.data, y_ref.detach().numpy(), rtol=tol, atol=tol)
    w = _weights(y.shape)
    (y * w).sum().backward()
    (y_ref * torch.tensor(w)).sum().backward()
    grads = []
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.grad is not None and b.grad is not None, f"input {i} got no gradient"
        assert a.grad.shape == a.shape, f"input {i}: grad shape {a.grad.shape} != {a.shape}"
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=tol, atol=tol, err_msg=f"input {i}")
        grads.append(a.grad)
    return grads


def assert_grads_match_finite_differences(
    scratch_fn: Callable[..., Tensor], arrays: Sequence[np.ndarray], eps: float = 1e-6, tol: float = 1e-5
) -> None:
    """dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps) for L = sum(w * f(x)), every element i."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    y = scratch_fn(*ours)
    w = _weights(y.shape)
    (y * w).sum().backward()

    def loss(values: list[np.ndarray]) -> float:
        return float((scratch_fn(*[Tensor(v) for v in values]).data * w).sum())

    for i, a in enumerate(arrays):
        numeric = np.zeros_like(a)
        for j in np.ndindex(a.shape):
            plus = [v.copy() for v in arrays]
            minus = [v.copy() for v in arrays]
            plus[i][j] += eps
            minus[i][j] -= eps
            numeric[j] = (loss(plus) - loss(minus)) / (2 * eps)
        np.testing.assert_allclose(ours[i].grad, numeric, rtol=tol, atol=tol, err_msg=f"input {i}")
