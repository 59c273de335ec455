"""Weight-only int8/int4: quantisation error bounds per block, kernels against the dequantise-then-matmul
reference, the portable layout behind the int4 kernel's packing, and whole models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zeroforge.errors import ConfigError
from zeroforge.modules.quantized import (
    QuantizedEmbedding,
    QuantizedLinear,
    QuantScheme,
    convert_to_quantized,
    dequantize_int4,
    pack_nibbles,
    quantize_int4,
    quantize_int8,
    unpack_nibbles,
)

SCHEMES = [
    QuantScheme(8),
    QuantScheme(8, symmetric=False),
    *(QuantScheme(4, g, sym) for g in (32, 64, 128) for sym in (True, False)),
]


def _weight(out: int = 48, inp: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, inp, generator=g) * 0.05
    w[3] += 0.2  # a skewed row: asymmetric schemes have something to gain
    w[5] = 0.01  # a constant row: scale 0, still exact
    return w


@pytest.mark.parametrize("symmetric", [True, False])
def test_int8_error_at_most_half_a_step_per_row(symmetric: bool) -> None:
    w = _weight()
    q, s, z = quantize_int8(w, symmetric)
    deq = q.float() * s[:, None] + (0 if z is None else z[:, None])
    assert q.dtype == torch.int8
    err = (deq - w).abs().amax(dim=1)
    assert torch.all(err <= s / 2 * (1 + 1e-5) + 1e-7)
    assert torch.allclose(deq[5], w[5], atol=1e-7)  # constant row exact
    if symmetric:
        assert q.min() >= -127 and (z is None)


@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_error_bound_per_group(group_size: int, symmetric: bool) -> None:
    w = _weight()
    q, sz = quantize_int4(w, group_size, symmetric)
    assert q.min() >= 0 and q.max() <= 15 and sz.shape == (256 // group_size, 48, 2)
    deq = dequantize_int4(q, sz)
    err = (deq - w).abs().view(48, -1, group_size).amax(dim=-1)  # (out, G)
    step = sz[..., 0].t().abs()
    # half a step, except symmetric Q4_0's +8 end, which clamps to 7: one step
    bound = step if symmetric else step / 2
    assert torch.all(err <= bound * (1 + 1e-5) + 1e-7)
    assert torch.allclose(deq[5], w[5], atol=1e-7)


def test_nibbles_round_trip() -> None:
    q = torch.randint(0, 16, (32, 64), dtype=torch.int32)
    packed = pack_nibbles(q)
    assert packed.shape == (32, 32) and packed.dtype == torch.uint8
    assert int(packed[0, 0]) == int(q[0, 0]) | (int(q[0, 1]) << 4)
    assert torch.equal(unpack_nibbles(packed), q)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
@pytest.mark.parametrize("rows", [1, 7])
def test_kernel_equals_reference(scheme: QuantScheme, rows: int) -> None:
    linear = nn.Linear(256, 48)
    linear.weight.data = _weight()
    layer = QuantizedLinear.from_float(linear, scheme)
    if scheme.bits == 4:
        assert layer.packed  # 48 rows: the CPU int4 kernel runs
    x = torch.randn(2, rows, 256, generator=torch.Generator().manual_seed(rows))
    fast, ref = layer(x), layer.forward_reference(x)
    assert fast.shape == (2, rows, 48)
    # the kernels take x and the scales in bf16 and return bf16 (fp32 accumulation): each rounding is
    # at most 2^-9 relative, so every output is within 3 * 2^-9 of the terms' absolute sum
    # |x| @ |W|^T + |b| of the fp32 reference; a wrong scale, group or packing is O(1)
    magnitude = x.abs() @ layer.dequantize().abs().t() + linear.bias.abs()
    assert torch.all((fast - ref).abs() <= 3 * 2**-9 * magnitude)
    assert (fast - ref).norm() / ref.norm() < 1e-2
    # and the quantised layer is close to the float one
    exact = linear(x)
    assert (fast - exact).norm() / exact.norm() < (0.15 if scheme.bits == 4 else 0.01)


@pytest.mark.parametrize("scheme", SCHEMES[2:4], ids=lambda s: s.name)
def test_int4_packing_is_invisible(scheme: QuantScheme) -> None:
    """state_dict holds the portable nibbles whatever the kernel packing; a load repacks."""
    linear = nn.Linear(256, 32, bias=False)
    linear.weight.data = _weight(32)
    layer = QuantizedLinear.from_float(linear, scheme)
    q, sz = quantize_int4(linear.weight, scheme.group_size or 64, scheme.symmetric)
    state = layer.state_dict()
    assert torch.equal(state["qweight"], pack_nibbles(q)) and torch.equal(state["scales_and_zeros"], sz)
    twin = QuantizedLinear(256, 32, scheme)
    twin.pack()
    twin.load_state_dict(state)
    x = torch.randn(3, 256)
    assert torch.equal(twin(x), layer(x))
    odd = QuantizedLinear.from_float(nn.Linear(64, 10), QuantScheme(4, 32))  # 10 rows: no kernel
    assert not odd.packed
    x = torch.randn(2, 64)
    assert torch.equal(odd(x), odd.forward_reference(x))  # the reference path, fp32 throughout


@pytest.mark.parametrize("scheme", [QuantScheme(8), QuantScheme(4, 32, False)], ids=lambda s: s.name)
def test_embedding_rows_match_table(scheme: QuantScheme) -> None:
    emb = nn.Embedding(50, 64)
    layer = QuantizedEmbedding.from_float(emb, scheme)
    ids = torch.tensor([[0, 7, 49], [3, 3, 1]])
    out = layer(ids)
    assert out.shape == (2, 3, 64)
    assert torch.equal(out, layer.dequantize()[ids])
    assert (out - emb(ids)).abs().max() < 0.5 * (emb.weight.abs().max() / (7 if scheme.bits == 4 else 127))


def test_bad_schemes_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="bits: expected 8 or 4, got 3"):
        QuantScheme(3)
    with pytest.raises(ConfigError, match="group_size: expected one of 32, 64, 128"):
        QuantScheme(4, 48)
    with pytest.raises(ConfigError, match="group_size: int8"):
        QuantScheme(8, 64)
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 96))
    with pytest.raises(ConfigError, match="does not divide the input width 32 of layer 1"):
        convert_to_quantized(model, QuantScheme(4, 64))
    assert type(model[0]) is nn.Linear  # nothing replaced


def test_whole_model_keeps_tied_and_biases() -> None:
    from zeroforge.registry import create_model

    torch.manual_seed(0)
    model = create_model("gpt", n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=96).eval()
    ids = torch.randint(0, 96, (2, 16))
    ref = model(input_ids=ids).logits
    convert_to_quantized(model, QuantScheme(8))
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Linear" not in kinds and "QuantizedLinear" in kinds and "QuantizedEmbedding" in kinds
    out = model(input_ids=ids).logits
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()


def test_int4_keeps_vocabulary_layers_int8() -> None:
    from zeroforge.registry import create_model

    model = create_model("gpt", n_layer=1, n_head=2, n_embd=64, block_size=16, vocab_size=96).eval()
    convert_to_quantized(model, QuantScheme(4, 32))
    assert model.lm_head.scheme.bits == 8 and model.transformer.wte.scheme.bits == 8
    assert model.transformer.h[0].attn.c_attn.scheme.bits == 4
