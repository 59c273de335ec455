"""Every Tensor op: gradients equal torch.autograd's (float64, 1e-6) and central finite differences."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scratch_parity import assert_grads_match_finite_differences, assert_grads_match_torch

from zeroforge.errors import ZeroforgeError
from zeroforge.scratch import Tensor, concatenate, no_grad, stack, where

SETTINGS = settings(max_examples=20, deadline=None)
seeds = st.integers(0, 2**16)
broadcast_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)


def _rand(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=shape)


BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
    "pow": (lambda a, b: a**b, lambda a, b: a**b),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@SETTINGS
@given(pair=broadcast_pairs, seed=seeds)
def test_binary_ops_broadcast_like_torch(name: str, pair: hnp.BroadcastableShapes, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = (_rand(rng, s) for s in pair.input_shapes)
    if name in ("div", "pow"):  # keep away from 0 (division) and negative bases (real powers)
        b = np.abs(b) + 0.5 if name == "div" else b
        a = np.abs(a) + 0.5 if name == "pow" else a
    ours, theirs = BINARY[name]
    assert_grads_match_torch(ours, theirs, [a, b])
    assert_grads_match_finite_differences(ours, [a, b])


def test_scalar_operands_and_reflected_ops() -> None:
    a = np.random.default_rng(0).normal(size=(3, 2)) + 3
    assert_grads_match_torch(
        lambda x: (2 - x) * 3 + 1 / x - x**2 + (-x) / 4, lambda x: (2 - x) * 3 + 1 / x - x**2 + (-x) / 4, [a]
    )


UNARY = {
    "exp": (lambda x: x.exp(), torch.exp, False),
    "log": (lambda x: x.log(), torch.log, True),
    "tanh": (lambda x: x.tanh(), torch.tanh, False),
    "sigmoid": (lambda x: x.sigmoid(), torch.sigmoid, False),
    "relu": (lambda x: x.relu(), torch.relu, False),
    "sqrt": (lambda x: x.sqrt(), torch.sqrt, True),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@SETTINGS
@given(shape=shapes, seed=seeds)
def test_unary_ops_match_torch(name: str, shape: tuple[int, ...], seed: int) -> None:
    ours, theirs, positive = UNARY[name]
    x = _rand(np.random.default_rng(seed), shape)
    x = np.abs(x) + 0.5 if positive else x
    if name == "relu":
        x = np.where(np.abs(x) < 1e-3, 0.5, x)  # finite differences are wrong at the kink
    assert_grads_match_torch(ours, theirs, [x])
    assert_grads_match_finite_differences(ours, [x])


@st.composite
def matmul_shapes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3)).input_shapes
    kind = draw(st.sampled_from(["matrix", "vector-left", "vector-right", "vectors"]))
    if kind == "vector-left":
        return (k,), (*batch[1], k, m)
    if kind == "vector-right":
        return (*batch[0], n, k), (k,)
    if kind == "vectors":
        return (k,), (k,)
    return (*batch[0], n, k), (*batch[1], k, m)


@SETTINGS
@given(pair=matmul_shapes(), seed=seeds)
def test_matmul_batched_and_broadcast_like_torch(pair: tuple[tuple[int, ...], ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = (_rand(rng, s) for s in pair)
    assert_grads_match_torch(lambda x, y: x @ y, lambda x, y: x @ y, [a, b])
    assert_grads_match_finite_differences(lambda x, y: x @ y, [a, b])


@st.composite
def axes_of(draw: st.DrawFn) -> tuple[tuple[int, ...], int | tuple[int, ...] | None, bool]:
    shape = draw(shapes)
    axis = draw(
        st.none()
        | st.integers(-len(shape), len(shape) - 1)
        | st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple)
    )
    return shape, axis, draw(st.booleans())


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@SETTINGS
@given(case=axes_of(), seed=seeds)
def test_reductions_over_axes_match_torch(name: str, case: tuple, seed: int) -> None:
    shape, axis, keepdims = case
    x = _rand(np.random.default_rng(seed), shape)
    torch_dims = tuple(range(len(shape))) if axis is None else axis

    def ours(t: Tensor) -> Tensor:
        return getattr(t, name)(axis=axis, keepdims=keepdims)

    def theirs(t: torch.Tensor) -> torch.Tensor:
        fn = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}[name]
        return fn(t, dim=torch_dims, keepdim=keepdims)

    assert_grads_match_torch(ours, theirs, [x])
    assert_grads_match_finite_differences(ours, [x])


def test_max_shares_the_gradient_between_ties_like_amax() -> None:
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]])
    grads = assert_grads_match_torch(lambda t: t.max(axis=1), lambda t: torch.amax(t, dim=1), [x])
    assert grads[0][0, 0] == 0 and grads[0][0, 1] == grads[0][0, 2] != 0


@SETTINGS
@given(shape=shapes, seed=seeds)
def test_reshape_and_transpose_match_torch(shape: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = _rand(rng, shape)
    order = tuple(rng.permutation(len(shape)).tolist())
    assert_grads_match_torch(
        lambda t: t.transpose(*order).reshape(-1), lambda t: t.permute(order).reshape(-1), [x]
    )
    assert_grads_match_torch(lambda t: t.T, lambda t: t.permute(*reversed(range(t.ndim))), [x])
    assert_grads_match_finite_differences(lambda t: t.transpose(*order).reshape(1, -1), [x])


def test_indexing_slices_and_repeated_fancy_indices_accumulate() -> None:
    x = np.random.default_rng(1).normal(size=(5, 4))
    rows = np.array([0, 3, 3, 1])  # row 3 used twice: its gradient is the sum of both uses
    assert_grads_match_torch(lambda t: t[rows], lambda t: t[torch.tensor(rows)], [x])
    assert_grads_match_torch(lambda t: t[1:4, ::2], lambda t: t[1:4, ::2], [x])
    assert_grads_match_torch(
        lambda t: t[rows, [0, 1, 2, 1]], lambda t: t[torch.tensor(rows), [0, 1, 2, 1]], [x]
    )
    assert_grads_match_finite_differences(lambda t: t[rows], [x])


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=2, max_dims=3, max_side=4), seed=seeds)
def test_gather_matches_torch(shape: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = _rand(rng, shape)
    axis = int(rng.integers(0, len(shape)))
    index_shape = list(shape)
    index_shape[axis] = int(rng.integers(1, 5))
    index = rng.integers(0, shape[axis], size=index_shape)
    assert_grads_match_torch(
        lambda t: t.gather(axis, index), lambda t: t.gather(axis, torch.tensor(index)), [x]
    )
    assert_grads_match_finite_differences(lambda t: t.gather(axis, index), [x])


def test_concatenate_stack_and_where_match_torch() -> None:
    rng = np.random.default_rng(2)
    a, b, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 1)), rng.normal(size=(2, 3))
    assert_grads_match_torch(
        lambda x, y: concatenate([x, y, x], axis=1), lambda x, y: torch.cat([x, y, x], dim=1), [a, b]
    )
    assert_grads_match_torch(
        lambda x, y: stack([x, y], axis=1), lambda x, y: torch.stack([x, y], dim=1), [a, c]
    )
    cond = a > 0
    assert_grads_match_torch(
        lambda x, y: where(cond, x, y), lambda x, y: torch.where(torch.tensor(cond), x, y), [a, c]
    )
    assert_grads_match_finite_differences(lambda x, y: concatenate([x, y], axis=1), [a, b])


# ----------------------------------------------------------------------------- the engine


def test_a_value_used_twice_gets_the_sum_of_both_paths() -> None:
    x = Tensor(np.array([2.0, -1.0]), requires_grad=True)
    y = x * x + x.exp() * x  # dy/dx = 2x + e^x (1 + x)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + np.exp(x.data) * (1 + x.data))


def test_leaf_gradients_accumulate_across_backward_calls() -> None:
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None


def test_no_grad_records_no_graph() -> None:
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = (x * 2).sum()
    assert not y.requires_grad
    assert (x * 2).requires_grad


def test_a_deep_chain_backpropagates_without_recursion() -> None:
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.backward()
    assert x.grad == 1.0


def test_backward_on_a_non_scalar_needs_a_gradient() -> None:
    y = Tensor(np.ones((2, 3)), requires_grad=True) * 2
    with pytest.raises(ZeroforgeError, match=r"shape \(2, 3\).*explicit gradient"):
        y.backward()
    y.backward(np.ones((2, 3)))  # with one it works
    with pytest.raises(ZeroforgeError, match="gradient shape"):
        y.backward(np.ones(3))


def test_backward_without_parameters_is_refused() -> None:
    with pytest.raises(ZeroforgeError, match="does not require grad"):
        Tensor(np.ones(2)).sum().backward()


def test_matmul_shape_mismatch_names_both_shapes() -> None:
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5)))
    with pytest.raises(ZeroforgeError, match=r"\(2, 3\) @ \(4, 5\).*3 != 4"):
        a @ b


def test_importing_scratch_does_not_import_torch() -> None:
    code = "import sys, zeroforge.scratch; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
