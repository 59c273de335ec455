"""Attention capture: the probabilities equal softmax(QK^T/sqrt(d) + mask) recomputed from each layer's
own weights and inputs, and capturing them leaves the model's outputs unchanged."""

from __future__ import annotations

import json
import math

import pytest
import torch

from zeroforge.explain.attention import attention_maps, explain_attention, head_summary
from zeroforge.modules.attention import capture_attention
from zeroforge.modules.rope import apply_rotary
from zeroforge.registry import create_model
from zeroforge.tokenizers import CharTokenizer


def _inputs_of(modules: list[torch.nn.Module], run) -> list[tuple]:
    """The positional inputs each module received during ``run()``."""
    seen: list[tuple] = []
    hooks = [m.register_forward_hook(lambda m, args, out: seen.append(args)) for m in modules]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return seen


def _softmax_scores(q: torch.Tensor, k: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, nh, T, S)
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1)


@pytest.mark.parametrize("attention", ["sdpa", "naive"])
def test_gpt_maps_recomputed_from_weights(attention: str) -> None:
    torch.manual_seed(0)
    model = create_model(
        "gpt", n_layer=2, n_head=2, n_embd=16, vocab_size=40, block_size=16, attention=attention
    )
    model.eval()
    ids = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        plain = model(ids).logits
        attns = [b.attn for b in model.transformer.h]
        with capture_attention() as maps:
            inputs = _inputs_of(attns, lambda: model(ids))
            captured = model(ids).logits
    assert torch.equal(plain, captured)  # capture changes nothing the model returns
    assert len(maps) == 4  # 2 layers x 2 forwards
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    for layer, (attn, (x, *_)) in enumerate(zip(attns, inputs)):
        q, k, _ = attn.c_attn(x).split(16, dim=2)
        q, k = (t.view(2, 9, 2, 8).transpose(1, 2) for t in (q, k))  # (B, nh, T, hs)
        torch.testing.assert_close(maps[layer], _softmax_scores(q, k, causal), rtol=1e-5, atol=1e-6)


def test_llama_gqa_maps_recomputed_from_weights() -> None:
    torch.manual_seed(0)
    model = create_model(
        "llama",
        n_layer=2,
        n_head=4,
        n_kv_head=2,
        n_embd=32,
        intermediate_size=48,
        vocab_size=50,
        block_size=32,
    )
    model.eval()
    ids = torch.randint(0, 50, (1, 7))
    attns = [b.self_attn for b in model.model.layers]
    with torch.no_grad():
        plain = model(ids).logits
        with capture_attention() as maps:
            inputs = _inputs_of(attns, lambda: model(ids))
        assert torch.equal(plain, model(ids).logits)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    for layer, (attn, (x, (cos, sin), *_)) in enumerate(zip(attns, inputs)):
        q = apply_rotary(attn.q_proj(x).view(1, 7, 4, 8).transpose(1, 2), cos, sin)
        k = apply_rotary(attn.k_proj(x).view(1, 7, 2, 8).transpose(1, 2), cos, sin)
        k = k.repeat_interleave(2, dim=1)  # each K head serves two query heads
        torch.testing.assert_close(maps[layer], _softmax_scores(q, k, causal), rtol=1e-5, atol=1e-6)


def test_bert_maps_with_padding_recomputed_from_weights() -> None:
    torch.manual_seed(0)
    model = create_model(
        "bert", n_layer=2, n_head=2, n_embd=16, intermediate_size=32, vocab_size=60, block_size=16
    )
    model.eval()
    ids = torch.randint(5, 60, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    attns = [layer.attention for layer in model.bert.encoder.layer]
    with torch.no_grad():
        plain = model.hidden_states(ids, mask)
        with capture_attention() as maps:
            inputs = _inputs_of(attns, lambda: model.hidden_states(ids, mask))
        assert torch.equal(plain, model.hidden_states(ids, mask))
    keys = mask.bool()[:, None, None, :]  # (B, 1, 1, S)
    for layer, (attn, (x, _)) in enumerate(zip(attns, inputs)):
        q, k = (p(x).view(2, 6, 2, 8).transpose(1, 2) for p in (attn.query, attn.key))
        expected = _softmax_scores(q, k, keys)
        torch.testing.assert_close(maps[layer], expected, rtol=1e-5, atol=1e-6)
        assert maps[layer][1, :, :, 4:].abs().max() == 0  # padding keys get nothing


def test_no_capture_outside_the_block() -> None:
    model = create_model("gpt", n_layer=1, n_head=1, n_embd=8, vocab_size=20, block_size=8)
    with capture_attention() as maps:
        pass
    model(torch.zeros(1, 4, dtype=torch.long))
    assert maps == []


def test_head_summary_on_known_maps() -> None:
    T = 4
    prev = torch.zeros(T, T)
    prev[0, 0] = 1.0
    for i in range(1, T):
        prev[i, i - 1] = 1.0  # a pure previous-token head
    uniform = torch.full((T, T), 1.0 / T)
    stats = head_summary(torch.stack([prev, uniform])[None])  # (1 layer, 2 heads, T, T)
    assert stats[0].previous_token == pytest.approx(1.0)
    assert stats[0].entropy == pytest.approx(0.0, abs=1e-6)
    assert stats[0].mean_distance == pytest.approx(3 / 4)
    assert stats[1].entropy == pytest.approx(math.log(T))
    assert stats[1].first_token == pytest.approx(0.25)
    assert stats[1].mean_distance == pytest.approx(20 / 16)  # sum over i, j of |i - j| is 20 for T = 4


def test_explain_attention_writes_grid_json_and_table(tmp_path) -> None:
    tok = CharTokenizer.from_text("abcdefgh ")
    model = create_model("gpt", n_layer=2, n_head=2, n_embd=16, vocab_size=tok.vocab_size, block_size=16)
    report = explain_attention(model, tok, "abc defg", tmp_path)
    saved = json.loads((tmp_path / "attention.json").read_text())
    assert saved["tokens"] == list("abc defg") and saved["n_layer"] == 2 and saved["n_head"] == 2
    maps = torch.tensor(saved["attention"])
    assert maps.shape == (2, 2, 8, 8)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, 8), atol=1e-3, rtol=0)
    assert torch.allclose(maps, attention_maps(model, torch.tensor(report["ids"])), atol=1e-4)
    assert (tmp_path / "attention.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "attention_heads.md").read_text().count("\n") == 2 + 4


def test_encoder_decoder_maps_cover_self_and_cross_attention() -> None:
    """The encoder-decoder's three kinds of attention are captured in the order they run: encoder
    self-attention, then per decoder layer its causal self-attention and its cross-attention, which
    gives a padded source token no weight."""
    torch.manual_seed(0)
    model = create_model("transformer-tiny").eval()
    source = torch.randint(4, 64, (2, 7))
    source_mask = torch.ones(2, 7, dtype=torch.long)
    source_mask[1, 5:] = 0  # the second sentence has 5 real tokens and 2 pads
    target = torch.randint(4, 64, (2, 6))
    with torch.no_grad():
        plain = model(source, source_mask, decoder_input_ids=target).logits
        with capture_attention() as maps:
            captured = model(source, source_mask, decoder_input_ids=target).logits
    assert torch.equal(plain, captured)
    n_enc, n_dec = model.config.n_encoder_layer, model.config.n_decoder_layer
    assert len(maps) == n_enc + 2 * n_dec
    encoder, decoder = maps[:n_enc], maps[n_enc:]
    for probs in encoder:
        assert probs.shape == (2, 4, 7, 7)
        assert float(probs[1, :, :, 5:].abs().max()) == 0.0  # no query attends a padded source token
    for self_probs, cross_probs in zip(decoder[0::2], decoder[1::2]):
        assert self_probs.shape == (2, 4, 6, 6)
        assert torch.equal(self_probs.triu(1), torch.zeros_like(self_probs))  # causal
        assert cross_probs.shape == (2, 4, 6, 7)
        assert float(cross_probs[1, :, :, 5:].abs().max()) == 0.0
        torch.testing.assert_close(cross_probs.sum(-1), torch.ones(2, 4, 6))
