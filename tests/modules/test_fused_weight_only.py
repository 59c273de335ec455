"""Weight-only bf16 layers (modules/weight_only.py): fp32 arithmetic on bf16-rounded weights, eager and compiled."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.models.gpt import GPT, GPTConfig
from zeroforge.modules.weight_only import (
    WeightOnlyEmbedding,
    WeightOnlyLinear,
    convert_to_weight_only,
    materialize,
)


def linear(out_features: int = 40, in_features: int = 24, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features)


def test_eager_forward_is_fp32_linear_on_rounded_weights():
    lin = linear()
    wol = WeightOnlyLinear(nn.Parameter(lin.weight.detach().bfloat16(), requires_grad=False), lin.bias)
    x = torch.randn(3, 5, 24)
    rounded = lin.weight.detach().bfloat16().float()
    torch.testing.assert_close(wol(x), F.linear(x, rounded, lin.bias), rtol=0, atol=0)
    assert wol(x).dtype == torch.float32
    assert not torch.equal(rounded, lin.weight)  # the rounding is real, so the test above means something


def test_materialize_is_an_identity_copy():
    x = torch.randn(4, 3)
    y = materialize(x)
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()


@pytest.mark.slow
def test_compiled_matrix_vector_path_equals_eager():
    lin = linear(out_features=300, in_features=64)
    wol = WeightOnlyLinear(nn.Parameter(lin.weight.detach().bfloat16(), requires_grad=False), lin.bias)
    compiled = torch.compile(wol, dynamic=False)
    for shape in [
        (1, 1, 64),
        (2, 1, 64),
        (1, 9, 64),
    ]:  # decode steps (reduction path) and a prefill (F.linear)
        x = torch.randn(shape)
        with torch.inference_mode():
            torch.testing.assert_close(compiled(x), wol(x), rtol=1e-5, atol=1e-5)


def test_convert_keeps_ties_and_matches_an_fp32_model_with_rounded_weights():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64)).eval()
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for p in reference.parameters():
            if p.dim() == 2:  # every Linear and Embedding weight, as the conversion rounds them
                p.copy_(p.bfloat16().float())
    converted = convert_to_weight_only(copy.deepcopy(model), torch.bfloat16)
    assert isinstance(converted.lm_head, WeightOnlyLinear)
    assert isinstance(converted.transformer.wte, WeightOnlyEmbedding)
    assert isinstance(converted.transformer.h[0].mlp.c_fc, WeightOnlyLinear)
    assert converted.lm_head.weight is converted.transformer.wte.weight  # still tied
    assert converted.lm_head.weight.dtype == torch.bfloat16 and not converted.lm_head.weight.requires_grad
    assert converted.transformer.ln_f.weight.dtype == torch.float32
    x = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(converted(x).logits, reference(x).logits, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(model(x).logits, reference(x).logits, rtol=1e-6, atol=1e-6)


def test_embedding_lookup_comes_out_in_the_compute_dtype():
    table = torch.randn(10, 4)
    emb = WeightOnlyEmbedding(nn.Parameter(table.bfloat16(), requires_grad=False), torch.float32)
    ids = torch.tensor([[3, 1, 9]])
    torch.testing.assert_close(emb(ids), F.embedding(ids, table.bfloat16().float()), rtol=0, atol=0)
