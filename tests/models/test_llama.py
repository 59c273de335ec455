"""Llama: parity with transformers' LlamaForCausalLM (logits, loss, greedy generate, left padding),
RMSNorm and RoPE against HF's own functions, KV cache == recompute, GQA, SDPA == naive, config errors."""

from __future__ import annotations

import pytest
import torch

from zeroforge.errors import ConfigError
from zeroforge.generation import generate_ids, left_pad
from zeroforge.models.llama import Llama, LlamaConfig
from zeroforge.modules.norm import RMSNorm
from zeroforge.modules.rope import RotaryEmbedding, apply_rotary
from zeroforge.registry import create_model

transformers = pytest.importorskip("transformers")
from transformers.models.llama import modeling_llama as hf_llama  # noqa: E402

from hf_twins import hf_llama as hf_llama_of  # noqa: E402  (tests/hf_twins.py)

TINY = dict(n_layer=2, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=64, vocab_size=64, block_size=32)


def tiny(**overrides) -> Llama:
    torch.manual_seed(0)
    model = Llama(LlamaConfig(**{**TINY, "rope_theta": 500.0, **overrides}))
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():  # far from init, so every weight and the norm gains matter
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if name.endswith("norm.weight") else 0.0))
    return model.eval()


X = torch.randint(0, 64, (3, 20), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("kv", [4, 2, 1])  # multi-head, grouped-query, multi-query
def test_logits_and_loss_match_transformers(attn_implementation, kv):
    model = tiny(n_kv_head=kv, tie_word_embeddings=kv != 2)
    hf = hf_llama_of(model, attn_implementation)
    labels = torch.cat([X[:, 1:], torch.full((3, 1), -100)], dim=1)
    with torch.no_grad():
        ours, theirs = model(X, labels=labels), hf(X, labels=X)
    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=1e-5)


def test_rmsnorm_matches_hf_bit_for_bit_in_bf16_and_fp32():
    x = torch.randn(2, 5, 48) * 3
    ours, theirs = RMSNorm(48, eps=1e-5), hf_llama.LlamaRMSNorm(48, eps=1e-5)
    with torch.no_grad():
        ours.weight.normal_()
        theirs.weight.copy_(ours.weight)
        assert torch.equal(ours(x), theirs(x))
        ours, theirs, xb = ours.bfloat16(), theirs.bfloat16(), x.bfloat16()
        assert torch.equal(ours(xb), theirs(xb))


def test_rope_matches_hf_and_only_relative_positions_matter():
    cfg = transformers.LlamaConfig(hidden_size=64, num_attention_heads=4, rope_theta=10000.0)
    hf_rope = hf_llama.LlamaRotaryEmbedding(cfg)
    rope = RotaryEmbedding(16, 10000.0)
    pos = torch.tensor([[0, 1, 5, 31, 1000]])
    q, k = torch.randn(1, 4, 5, 16), torch.randn(1, 4, 5, 16)
    cos, sin = rope(pos, torch.float32)
    hf_cos, hf_sin = hf_rope(q, pos)
    assert torch.equal(cos, hf_cos) and torch.equal(sin, hf_sin)
    hf_q, hf_k = hf_llama.apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
    assert torch.equal(apply_rotary(q, cos, sin), hf_q) and torch.equal(apply_rotary(k, cos, sin), hf_k)
    # RoPE's point: q_m . k_n depends on m - n only
    a, b = torch.randn(16), torch.randn(16)

    def dot(m: int, n: int) -> torch.Tensor:
        c, s = rope(torch.tensor([[m, n]]), torch.float64)
        qa = apply_rotary(a.double().view(1, 1, 1, 16).expand(1, 1, 2, 16), c, s)[0, 0, 0]
        kb = apply_rotary(b.double().view(1, 1, 1, 16).expand(1, 1, 2, 16), c, s)[0, 0, 1]
        return qa @ kb

    # (angles are fp32, so large positions carry ~1e-7 relative error)
    torch.testing.assert_close(dot(7, 3), dot(104, 100), atol=1e-5, rtol=1e-5)
    assert abs(dot(7, 3) - dot(7, 4)) > 1e-3


def test_bf16_cast_keeps_rope_frequencies_fp32():
    model = tiny().to(torch.bfloat16)
    assert model.rotary.inv_freq.dtype == torch.float32
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert model(X).logits.dtype == torch.bfloat16


def test_sdpa_equals_naive_attention():
    model = tiny()
    naive = tiny(attention="naive")
    with torch.no_grad():
        torch.testing.assert_close(model(X).logits, naive(X).logits, atol=1e-5, rtol=1e-5)


def test_causal():
    model = tiny()
    x2 = X.clone()
    x2[:, 10:] = (x2[:, 10:] + 1) % 64
    with torch.no_grad():
        torch.testing.assert_close(model(X).logits[:, :10], model(x2).logits[:, :10])


def test_kv_cache_equals_recompute_and_greedy_equals_transformers():
    model = tiny()
    hf = hf_llama_of(model)
    prompt = X[:1, :6]
    cached = generate_ids(model, prompt, max_new_tokens=12, temperature=0)
    recomputed = generate_ids(model, prompt, max_new_tokens=12, temperature=0, use_cache=False)
    assert torch.equal(cached, recomputed)
    theirs = hf.generate(prompt, max_new_tokens=12, do_sample=False, min_new_tokens=12)[:, 6:]
    assert torch.equal(cached, theirs)


def test_left_padded_batch_decodes_each_prompt_as_alone():
    model = tiny()
    prompts = [[5, 9, 2], [7, 1, 3, 3, 8, 4, 6]]
    ids, mask = left_pad(prompts)
    batch = generate_ids(model, ids, mask, max_new_tokens=6, temperature=0)
    for row, p in enumerate(prompts):
        alone = generate_ids(model, torch.tensor([p]), max_new_tokens=6, temperature=0)
        assert torch.equal(batch[row], alone[0])


def test_gqa_cache_holds_only_kv_heads():
    model = tiny(n_kv_head=1)
    cache = model.new_cache(2, 16)
    assert cache.keys[0].shape == (2, 1, 16, 8)


def test_smollm2_preset_size():
    with torch.device("meta"):
        model = create_model("smollm2-135m")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # HuggingFaceTB/SmolLM2-135M
    assert model.lm_head.weight is model.model.embed_tokens.weight


@pytest.mark.parametrize(
    "bad, field",
    [
        (dict(n_head=4, n_kv_head=3), "n_kv_head"),
        (dict(n_embd=30, n_head=4), "n_embd"),
        (dict(head_dim=7), "head_dim"),
        (dict(rope_theta=0.0), "rope_theta"),
    ],
)
def test_config_errors_name_the_field(bad, field):
    with pytest.raises(ConfigError, match=f"model.{field}"):
        create_model("llama-tiny", **bad)
