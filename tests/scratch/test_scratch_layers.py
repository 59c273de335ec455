"""Layers, activations and losses: gradients equal torch's (float64, 1e-6) and central finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scratch_parity import assert_grads_match_finite_differences, assert_grads_match_torch

from zeroforge.errors import ZeroforgeError
from zeroforge.scratch import Tensor, nn
from zeroforge.scratch import functional as F

SETTINGS = settings(max_examples=15, deadline=None)
seeds = st.integers(0, 2**16)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)

ACTIVATIONS = {
    "sigmoid": (F.sigmoid, torch.sigmoid),
    "tanh": (F.tanh, torch.tanh),
    "relu": (F.relu, torch.relu),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda x: tF.leaky_relu(x, 0.1)),
    "gelu": (F.gelu, lambda x: tF.gelu(x, approximate="tanh")),
    "gelu_exact": (lambda x: F.gelu(x, approximate="none"), tF.gelu),
    "softmax": (lambda x: F.softmax(x, axis=-1), lambda x: torch.softmax(x, dim=-1)),
    "softmax_axis0": (lambda x: F.softmax(x, axis=0), lambda x: torch.softmax(x, dim=0)),
    "log_softmax": (lambda x: F.log_softmax(x, axis=-1), lambda x: torch.log_softmax(x, dim=-1)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@SETTINGS
@given(shape=shapes, seed=seeds)
def test_activations_match_torch(name: str, shape: tuple[int, ...], seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=shape) * 3
    x = np.where(np.abs(x) < 1e-3, 0.5, x)  # away from the ReLU kink for finite differences
    ours, theirs = ACTIVATIONS[name]
    assert_grads_match_torch(ours, theirs, [x])
    assert_grads_match_finite_differences(ours, [x])


@SETTINGS
@given(batch=st.integers(1, 6), classes=st.integers(2, 6), seed=seeds)
def test_losses_match_torch(batch: int, classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, classes)) * 2
    labels = rng.integers(0, classes, size=batch)
    ce = (lambda z: F.cross_entropy(z, labels), lambda z: tF.cross_entropy(z, torch.tensor(labels)))
    assert_grads_match_torch(*ce, [logits])
    assert_grads_match_finite_differences(ce[0], [logits])

    pred, target = rng.normal(size=(batch, classes)), rng.normal(size=(batch, classes))
    assert_grads_match_torch(F.mse_loss, tF.mse_loss, [pred, target])
    assert_grads_match_finite_differences(F.mse_loss, [pred, target])

    prob, bits = rng.uniform(0.05, 0.95, size=batch), rng.integers(0, 2, size=batch).astype(np.float64)
    bce = (
        lambda p: F.binary_cross_entropy(p, bits),
        lambda p: tF.binary_cross_entropy(p, torch.tensor(bits)),
    )
    assert_grads_match_torch(*bce, [prob])
    assert_grads_match_finite_differences(bce[0], [prob])
    z = rng.normal(size=batch) * 3
    bce_logits = (
        lambda s: F.binary_cross_entropy_with_logits(s, bits),
        lambda s: tF.binary_cross_entropy_with_logits(s, torch.tensor(bits)),
    )
    assert_grads_match_torch(*bce_logits, [z])
    assert_grads_match_finite_differences(bce_logits[0], [z])

    signs = np.where(bits > 0, 1.0, -1.0)
    scores = np.where(np.abs(1 - signs * z) < 1e-3, 0.0, z)  # off the hinge's kink
    hinge = (
        lambda s: F.hinge_loss(s, signs),
        lambda s: torch.clamp(1 - s * torch.tensor(signs), min=0).mean(),
    )
    assert_grads_match_torch(*hinge, [scores])
    assert_grads_match_finite_differences(hinge[0], [scores])


def test_cross_entropy_over_a_sequence_matches_torch() -> None:
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(2, 3, 5)), rng.integers(0, 5, size=(2, 3))
    assert_grads_match_torch(
        lambda z: F.cross_entropy(z, labels),
        lambda z: tF.cross_entropy(z.reshape(-1, 5), torch.tensor(labels).reshape(-1)),
        [logits],
    )


def test_softmax_cross_entropy_stays_finite_for_huge_logits() -> None:
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]])
    labels = np.array([1, 2, 0])
    grads = assert_grads_match_torch(
        lambda z: F.cross_entropy(z, labels), lambda z: tF.cross_entropy(z, torch.tensor(labels)), [logits]
    )
    loss = F.cross_entropy(Tensor(logits), labels)
    assert np.isfinite(loss.item()) and np.isclose(loss.item(), (2e4 + 0 + math.log(2)) / 3)
    assert np.all(np.isfinite(grads[0]))
    assert np.all(np.isfinite(F.softmax(Tensor(logits * 10)).data))
    assert np.all(np.isfinite(F.binary_cross_entropy_with_logits(Tensor(np.array([1e4, -1e4])), [0, 1]).data))


def test_cross_entropy_rejects_mismatched_targets() -> None:
    with pytest.raises(ZeroforgeError, match=r"targets of shape \(4,\)"):
        F.cross_entropy(Tensor(np.zeros((4, 3))), np.zeros(5, dtype=int))


@SETTINGS
@given(
    n=st.integers(1, 2), c=st.integers(1, 3), f=st.integers(1, 3), size=st.integers(4, 7),
    k=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 1), seed=seeds,
)  # fmt: skip
def test_conv2d_im2col_matches_torch(n: int, c: int, f: int, size: int, k: int, stride: int, padding: int,
                                     seed: int) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(n, c, size, size + 1)), rng.normal(size=(f, c, k, k)), rng.normal(size=f)

    def ours(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return F.conv2d(x, w, b, stride, padding)

    def theirs(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return tF.conv2d(x, w, b, stride, padding)

    assert_grads_match_torch(ours, theirs, [x, w, b])


def test_conv2d_and_pooling_match_finite_differences() -> None:
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(1, 2, 5, 5)), rng.normal(size=(2, 2, 3, 3)), rng.normal(size=2)
    assert_grads_match_finite_differences(lambda x, w, b: F.conv2d(x, w, b, 2, 1), [x, w, b])
    assert_grads_match_finite_differences(lambda x: F.max_pool2d(x, 2), [x[:, :, :4, :4]])


@pytest.mark.parametrize(("kernel", "stride"), [(2, 2), (3, 2), (2, 1)])
def test_max_pool_matches_torch(kernel: int, stride: int) -> None:
    x = np.random.default_rng(kernel + stride).normal(size=(2, 3, 7, 6))
    assert_grads_match_torch(
        lambda t: F.max_pool2d(t, kernel, stride), lambda t: tF.max_pool2d(t, kernel, stride), [x]
    )


def test_conv2d_rejects_channel_mismatch() -> None:
    with pytest.raises(ZeroforgeError, match="conv2d"):
        F.conv2d(Tensor(np.zeros((1, 3, 5, 5))), Tensor(np.zeros((2, 1, 3, 3))))


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=5), seed=seeds)
def test_layer_norm_matches_torch(shape: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, g, b = rng.normal(size=shape), rng.normal(size=shape[-1]), rng.normal(size=shape[-1])
    assert_grads_match_torch(F.layer_norm, lambda x, g, b: tF.layer_norm(x, (shape[-1],), g, b), [x, g, b])
    assert_grads_match_finite_differences(F.layer_norm, [x, g, b])


def _with_params(module: nn.Module, **params: Tensor) -> nn.Module:
    for name, value in params.items():
        target = module
        *path, leaf = name.split("__")
        for part in path:
            target = getattr(target, part)
        setattr(target, leaf, value)
    return module


def test_linear_matches_torch() -> None:
    rng = np.random.default_rng(4)
    x, w, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(5, 4)), rng.normal(size=5)
    layer = nn.Linear(4, 5)
    assert_grads_match_torch(lambda x, w, b: _with_params(layer, weight=w, bias=b)(x), tF.linear, [x, w, b])
    assert_grads_match_finite_differences(lambda x, w, b: _with_params(layer, weight=w, bias=b)(x), [x, w, b])


def test_rnn_unrolled_through_time_matches_torch() -> None:
    rng = np.random.default_rng(5)
    batch, steps, inputs, hidden = 2, 4, 3, 5
    x = rng.normal(size=(batch, steps, inputs))
    w, u, b = (
        rng.normal(size=(hidden, inputs)),
        rng.normal(size=(hidden, hidden)) * 0.5,
        rng.normal(size=hidden),
    )
    rnn = nn.RNN(inputs, hidden)

    def ours(x: Tensor, w: Tensor, u: Tensor, b: Tensor) -> Tensor:
        return _with_params(rnn, cell__W=w, cell__U=u, cell__b=b)(x)

    def theirs(x: torch.Tensor, w: torch.Tensor, u: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # torch.nn.RNN has two biases (b_ih + b_hh); b_hh = 0 leaves the formula's single b
        reference = torch.nn.RNN(inputs, hidden, batch_first=True).double()
        params = {"weight_ih_l0": w, "weight_hh_l0": u, "bias_ih_l0": b, "bias_hh_l0": torch.zeros_like(b)}
        out, _ = torch.func.functional_call(reference, params, (x,))
        return out

    assert_grads_match_torch(ours, theirs, [x, w, u, b])
    assert_grads_match_finite_differences(ours, [x[:1, :3], w, u, b])


def test_embedding_matches_torch_and_checks_ids() -> None:
    rng = np.random.default_rng(6)
    table, ids = rng.normal(size=(7, 3)), np.array([[1, 4, 1], [6, 0, 1]])
    emb = nn.Embedding(7, 3)
    assert_grads_match_torch(
        lambda t: _with_params(emb, weight=t)(ids), lambda t: tF.embedding(torch.tensor(ids), t), [table]
    )
    with pytest.raises(ZeroforgeError, match=r"ids must lie in \[0, 7\)"):
        emb(np.array([7]))


def test_causal_self_attention_matches_torch_sdpa() -> None:
    rng = np.random.default_rng(7)
    batch, steps, dim, heads = 2, 5, 8, 2
    x = rng.normal(size=(batch, steps, dim))
    wqkv, bqkv = rng.normal(size=(3 * dim, dim)) * 0.3, rng.normal(size=3 * dim) * 0.1
    wo, bo = rng.normal(size=(dim, dim)) * 0.3, rng.normal(size=dim) * 0.1
    attn = nn.CausalSelfAttention(dim, heads)

    def ours(x: Tensor, wqkv: Tensor, bqkv: Tensor, wo: Tensor, bo: Tensor) -> Tensor:
        return _with_params(attn, qkv__weight=wqkv, qkv__bias=bqkv, proj__weight=wo, proj__bias=bo)(x)

    def theirs(x: torch.Tensor, wqkv: torch.Tensor, bqkv: torch.Tensor, wo: torch.Tensor,
               bo: torch.Tensor) -> torch.Tensor:  # fmt: skip
        q, k, v = tF.linear(x, wqkv, bqkv).split(dim, dim=-1)
        q, k, v = (t.reshape(batch, steps, heads, dim // heads).transpose(1, 2) for t in (q, k, v))
        out = tF.scaled_dot_product_attention(q, k, v, is_causal=True)
        return tF.linear(out.transpose(1, 2).reshape(batch, steps, dim), wo, bo)

    assert_grads_match_torch(ours, theirs, [x, wqkv, bqkv, wo, bo])
    assert_grads_match_finite_differences(ours, [x[:1, :3], wqkv, bqkv, wo, bo])
    with pytest.raises(ZeroforgeError, match="not divisible"):
        nn.CausalSelfAttention(6, 4)


def test_transformer_block_gives_every_parameter_a_gradient() -> None:
    block = nn.TransformerBlock(8, 2, np.random.default_rng(0))
    out = block(Tensor(np.random.default_rng(1).normal(size=(2, 4, 8))))
    assert out.shape == (2, 4, 8)
    out.sum().backward()
    params = list(block.parameters())
    assert len(params) == 12 and all(p.grad is not None and np.all(np.isfinite(p.grad)) for p in params)


def test_conv_net_parameters_and_zero_grad() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Activation(F.relu), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)
    )
    loss = F.cross_entropy(
        model(Tensor(np.random.default_rng(0).normal(size=(2, 1, 6, 6)))), np.array([0, 2])
    )
    loss.backward()
    assert model.num_parameters() == 2 * 9 + 2 + 8 * 3 + 3
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("init", "shape", "expected_std"),
    [
        (nn.xavier_uniform, (300, 200), math.sqrt(2 / 500)),
        (nn.xavier_normal, (300, 200), math.sqrt(2 / 500)),
        (nn.he_normal, (300, 200), math.sqrt(2 / 200)),
        (nn.he_normal, (64, 16, 3, 3), math.sqrt(2 / (16 * 9))),  # conv: fan_in = in * kh * kw
    ],
)
def test_initialisers_have_the_textbook_variance(
    init: object, shape: tuple[int, ...], expected_std: float
) -> None:
    w = init(shape, np.random.default_rng(0))  # type: ignore[operator]
    assert w.shape == shape and w.requires_grad
    assert abs(w.data.mean()) < 0.05 * expected_std * 10
    assert w.data.std() == pytest.approx(expected_std, rel=0.03)
    assert nn.normal((1000, 100), 0.02, np.random.default_rng(0)).data.std() == pytest.approx(0.02, rel=0.03)
