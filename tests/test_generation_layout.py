"""Decode-time weight layouts (Decoder(layout=True), the default): the same logits and tokens as the
model's own weights (layout=False), and the model itself left exactly as it was."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zeroforge.decoding import decoding_model
from zeroforge.generation import Decoder, left_pad
from zeroforge.models.gpt import GPT, GPTConfig
from zeroforge.models.llama import Llama, LlamaConfig
from zeroforge.modules.weight_only import (
    PackedLinear,
    TransposedLinear,
    _mkldnn,
    _mkldnn_bf16,
    convert_to_decode_layout,
)

needs_onednn_bf16 = pytest.mark.skipif(not _mkldnn_bf16(), reason="oneDNN bf16 matmul not available")


def randomized(model: nn.Module, seed: int = 1) -> nn.Module:
    """Large random weights (norm gains near 1), so next-token choices are decisive, not near-ties."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            gain = name.endswith("norm.weight") or (".ln_" in name and name.endswith("weight"))
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if gain else 0.0))
    return model.eval()


def tiny_llama(**overrides) -> Llama:
    torch.manual_seed(0)
    config = dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=64, vocab_size=96)
    return randomized(Llama(LlamaConfig(**{**config, "block_size": 64, "rope_theta": 500.0, **overrides})))


def tiny_gpt(vocab_size: int = 96) -> GPT:
    torch.manual_seed(0)
    return randomized(GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=vocab_size)))


def greedy_logits(decoder: Decoder, ids: torch.Tensor, mask: torch.Tensor | None, n: int):
    """Greedy decode n tokens; returns (tokens (B, n), logits of every step (n, B, vocab))."""
    logits = decoder.prefill(ids, mask, max_new_tokens=n)
    tokens, seen = [], []
    for i in range(n):
        seen.append(logits)
        tokens.append(logits.argmax(-1))
        if i + 1 < n:
            logits = decoder.step(tokens[-1])
    return torch.stack(tokens, 1), torch.stack(seen)


def snapshot(model: nn.Module) -> dict:
    return {
        "tensors": {k: v.clone() for k, v in model.state_dict().items()},
        "ids": {k: id(v) for k, v in model.named_parameters()},
        "types": [type(m) for m in model.modules()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["types"] == before["types"]  # no module swapped, no fused projection added
    assert after["ids"] == before["ids"]
    assert before["tensors"].keys() == after["tensors"].keys()
    for k, v in before["tensors"].items():
        assert torch.equal(v, after["tensors"][k]), k


PROMPTS = [[5, 9, 2, 17], [7, 1, 3, 3, 8, 4, 6, 11, 30]]


@pytest.mark.parametrize("family", ["llama", "llama-mqa", "llama-untied", "gpt"])
@pytest.mark.parametrize("padded", [False, True])
def test_fp32_layout_decodes_the_same_logits_as_the_model_weights(family, padded):
    model = {
        "llama": tiny_llama,
        "llama-mqa": lambda: tiny_llama(n_kv_head=1),
        "llama-untied": lambda: tiny_llama(tie_word_embeddings=False),
        "gpt": tiny_gpt,
    }[family]()
    before = snapshot(model)
    if padded:
        ids, mask = left_pad(PROMPTS)
    else:
        ids, mask = torch.tensor([PROMPTS[1]]), None
    plain_tokens, plain_logits = greedy_logits(Decoder(model, layout=False), ids, mask, 24)
    decoder = Decoder(model)
    fast_tokens, fast_logits = greedy_logits(decoder, ids, mask, 24)

    layers = [m for m in decoder.model.modules() if isinstance(m, TransposedLinear)]
    assert layers, "the layout path was not taken"
    assert isinstance(decoder.model.lm_head, TransposedLinear)  # vocab > n_embd: the widest product
    torch.testing.assert_close(fast_logits, plain_logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(fast_tokens, plain_tokens)
    assert len(set(plain_tokens.flatten().tolist())) > 3  # not a degenerate repeat of one token
    assert_unchanged(model, before)


def test_llama_decoding_copy_fuses_projections_without_a_second_copy():
    model = tiny_llama()
    copy_, _ = decoding_model(model, layout=True)
    attn, mlp = copy_.model.layers[0].self_attn, copy_.model.layers[0].mlp
    assert isinstance(attn.qkv_proj, TransposedLinear) and isinstance(mlp.gate_up_proj, TransposedLinear)
    # the fused weight is a view of its transposed (in, out) storage, not a second copy
    assert attn.qkv_proj.weight.data_ptr() == attn.qkv_proj.weight_t.data_ptr()
    expected = torch.cat(
        [
            model.model.layers[0].self_attn.q_proj.weight,
            model.model.layers[0].self_attn.k_proj.weight,
            model.model.layers[0].self_attn.v_proj.weight,
        ]
    )
    assert torch.equal(attn.qkv_proj.weight, expected)
    assert attn.q_proj is None and mlp.up_proj is None  # dropped from the copy: not prepared twice
    assert model.model.layers[0].self_attn.qkv_proj is None  # the model itself is not fused
    # a tied output layer keeps sharing the embedding's (out, in) weight; only its transpose is new
    assert copy_.lm_head.weight is model.model.embed_tokens.weight


@needs_onednn_bf16
@pytest.mark.parametrize("family", ["llama", "gpt"])
def test_bf16_layout_decodes_the_same_tokens_as_the_model_weights(family):
    model = (tiny_llama if family == "llama" else tiny_gpt)().to(torch.bfloat16)
    before = snapshot(model)
    ids, mask = left_pad(PROMPTS)
    plain_tokens, plain_logits = greedy_logits(Decoder(model, layout=False), ids, mask, 16)
    decoder = Decoder(model)
    fast_tokens, fast_logits = greedy_logits(decoder, ids, mask, 16)
    assert any(isinstance(m, PackedLinear) for m in decoder.model.modules())
    assert torch.equal(fast_tokens, plain_tokens)
    # oneDNN's kernel on a reordered weight; bf16 activations, so compare at bf16 precision
    torch.testing.assert_close(fast_logits, plain_logits, atol=2e-2, rtol=2e-2)
    assert_unchanged(model, before)


@pytest.mark.parametrize("rows", [1, 3, 9])  # one-row kernels up to MATVEC_ROWS, F.linear beyond
@pytest.mark.parametrize("bias", [False, True])
def test_layout_modules_equal_nn_linear(rows, bias):
    torch.manual_seed(0)
    linear = nn.Linear(24, 40, bias=bias)
    x = torch.randn(rows, 1, 24)
    transposed = convert_to_decode_layout(nn.Sequential(linear))[0]
    assert isinstance(transposed, TransposedLinear)
    torch.testing.assert_close(transposed(x), F.linear(x, linear.weight, linear.bias), atol=1e-6, rtol=1e-6)
    if _mkldnn():  # in > out: oneDNN's reordered weight, not the transposed layout
        narrow = nn.Linear(40, 24, bias=bias)
        xn = torch.randn(rows, 1, 40)
        packed = convert_to_decode_layout(nn.Sequential(narrow))[0]
        assert isinstance(packed, PackedLinear)
        torch.testing.assert_close(packed(xn), F.linear(xn, narrow.weight, narrow.bias), atol=1e-6, rtol=1e-6)
    if _mkldnn_bf16():
        low = nn.Linear(24, 40, bias=bias).to(torch.bfloat16)
        packed = convert_to_decode_layout(nn.Sequential(low))[0]
        assert isinstance(packed, PackedLinear)
        xb = x.bfloat16()
        torch.testing.assert_close(packed(xb), F.linear(xb, low.weight, low.bias), atol=1e-2, rtol=1e-2)


def test_shared_weight_gets_one_transposed_copy():
    torch.manual_seed(0)
    a = nn.Linear(8, 16, bias=False)
    b = nn.Linear(8, 16)
    b.weight = a.weight
    model = convert_to_decode_layout(nn.Sequential(a, b))
    assert model[0].weight_t is model[1].weight_t
    assert model[1].bias is b.bias


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hf_loaded_llama_decodes_like_transformers_and_is_unchanged(dtype, tmp_path):
    transformers = pytest.importorskip("transformers")
    from zeroforge.weights.hf import load_hf_model

    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=96,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            rope_theta=500.0,
            tie_word_embeddings=True,
        )
    )
    randomized(hf).save_pretrained(tmp_path)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=dtype).eval()
    ours = load_hf_model(tmp_path).to(dtype).eval()
    before = snapshot(ours)
    prompt = torch.tensor([PROMPTS[1]])
    tokens, _ = greedy_logits(Decoder(ours), prompt, None, 16)
    theirs = hf.generate(prompt, max_new_tokens=16, min_new_tokens=16, do_sample=False, pad_token_id=0)
    assert tokens.tolist() == theirs[:, prompt.size(1) :].tolist()
    assert_unchanged(ours, before)
    # nothing of the decoding copy reaches a checkpoint of the model
    assert not any("qkv" in k or "gate_up" in k or k.endswith("_t") for k in ours.state_dict())


@pytest.mark.parametrize("family", ["llama", "gpt"])
def test_compiled_static_decoding_equals_plain_eager_decoding(family):
    # a vocabulary 8 times the width: the output layer is multiplied by its transposed copy
    model = (tiny_llama if family == "llama" else tiny_gpt)(vocab_size=256)
    before = snapshot(model)
    ids, mask = torch.tensor([PROMPTS[1]]), None
    plain_tokens, plain_logits = greedy_logits(Decoder(model, layout=False), ids, mask, 12)
    decoder = Decoder(model, compile=True)
    assert decoder.static  # Llama's new_cache takes static=True like GPT's
    assert isinstance(decoder.model.lm_head, TransposedLinear)
    fast_tokens, fast_logits = greedy_logits(decoder, ids, mask, 12)
    torch.testing.assert_close(fast_logits, plain_logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(fast_tokens, plain_tokens)
    assert_unchanged(model, before)
