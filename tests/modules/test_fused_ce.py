"""Chunked lm_head + cross-entropy (modules/fused_ce.py) equals full logits + F.cross_entropy, grads included."""

import pytest
import torch
import torch.nn.functional as F

from zeroforge.models.gpt import GPT, GPTConfig
from zeroforge.modules.fused_ce import (
    default_chunk_rows,
    linear_cross_entropy,
    reference_linear_cross_entropy,
)


def inputs(n: int = 37, c: int = 16, v: int = 50, seed: int = 0, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=dtype, requires_grad=True)
    w = (torch.randn(v, c, generator=g, dtype=dtype) * 0.5).requires_grad_()
    labels = torch.randint(0, v, (n,), generator=g)
    labels[::5] = -100  # ignored rows
    return x, w, labels


def loss_and_grads(fn, x, w, labels, **kwargs):
    x.grad = w.grad = None
    loss = fn(x, w, labels, **kwargs)
    loss.backward()
    return loss.detach(), x.grad.clone(), w.grad.clone()


@pytest.mark.parametrize("chunk_rows", [1, 8, 10, 37, 1000])
def test_equals_full_logits_cross_entropy_in_float64(chunk_rows):
    x, w, labels = inputs()
    fused = loss_and_grads(linear_cross_entropy, x, w, labels, chunk_rows=chunk_rows)
    plain = loss_and_grads(reference_linear_cross_entropy, x, w, labels)
    for ours, theirs in zip(fused, plain):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert fused[1][::5].abs().max() == 0  # ignored rows get no gradient


def test_reference_is_torch_cross_entropy_and_gradcheck():
    x, w, labels = inputs(n=9, c=4, v=7)
    expected = F.cross_entropy(x @ w.t(), labels, ignore_index=-100)
    torch.testing.assert_close(reference_linear_cross_entropy(x, w, labels), expected)
    assert torch.autograd.gradcheck(lambda a, b: linear_cross_entropy(a, b, labels, chunk_rows=4), (x, w))


def test_scaled_upstream_gradient_and_3d_input():
    x, w, labels = inputs(n=24)
    x3, labels3 = x.detach().view(4, 6, 16).requires_grad_(), labels.view(4, 6)
    (3.0 * linear_cross_entropy(x3, w, labels3, chunk_rows=5)).backward()
    expected = loss_and_grads(lambda a, b, y: 3.0 * reference_linear_cross_entropy(a, b, y), x, w, labels)
    torch.testing.assert_close(x3.grad.view(24, 16), expected[1])
    torch.testing.assert_close(w.grad, expected[2])


def test_bf16_autocast_matches_the_autocast_reference():
    x, w, labels = inputs(n=64, c=32, v=300, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = loss_and_grads(linear_cross_entropy, x, w, labels, chunk_rows=16)
        plain = loss_and_grads(reference_linear_cross_entropy, x, w, labels)
    assert fused[0].dtype == torch.float32 and fused[1].dtype == x.dtype and fused[2].dtype == w.dtype
    torch.testing.assert_close(fused[0], plain[0], rtol=2e-3, atol=2e-3)
    for ours, theirs in zip(fused[1:], plain[1:]):
        torch.testing.assert_close(ours, theirs, rtol=0.05, atol=0.02 * theirs.abs().max().item())


def test_no_grad_gives_the_loss_only():
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountMatmuls(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm_):
                CountMatmuls.calls += 1
            return func(*args, **(kwargs or {}))

    x, w, labels = inputs()
    w.requires_grad_(True)  # a trainable output layer, evaluated under no_grad
    rows = x.reshape(-1, x.size(-1)).size(0)
    with torch.no_grad():
        with CountMatmuls():
            loss = linear_cross_entropy(x, w, labels, chunk_rows=8)
        torch.testing.assert_close(loss, reference_linear_cross_entropy(x, w, labels))
    assert CountMatmuls.calls == -(-rows // 8)  # the logits' products only, no gradient products


def test_chunk_rows_and_label_count_errors():
    assert default_chunk_rows(50304) == 640 and default_chunk_rows(96) > 10_000
    x, w, labels = inputs()
    with pytest.raises(ValueError, match="labels"):
        linear_cross_entropy(x, w, labels[:-1])


def test_gpt_fused_loss_equals_plain_loss_and_gradients():
    torch.manual_seed(0)
    cfg = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=97)
    plain = GPT(GPTConfig(**cfg))
    fused = GPT(GPTConfig(**cfg, fused_loss=True))
    fused.load_state_dict(plain.state_dict())
    x = torch.randint(0, 97, (3, 16), generator=torch.Generator().manual_seed(1))
    labels = x.roll(-1, dims=1)
    labels[:, -1] = -100
    out_plain, out_fused = plain(x, labels=labels), fused(x, labels=labels)
    assert out_fused.logits is None and out_plain.logits is not None  # the documented opt-in
    torch.testing.assert_close(out_fused.loss, out_plain.loss, rtol=1e-5, atol=1e-6)
    out_plain.loss.backward()
    out_fused.loss.backward()
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(fused(x).logits, plain(x).logits)  # no labels: logits as always
